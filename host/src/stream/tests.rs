use super::*;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

/// Items handed over one per turn of a producer task, the way hyper's client hands a
/// response body over (a channel with room for one).
fn one_per_turn(n: usize) -> impl Stream<Item = usize> + Unpin {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for i in 0..n {
            if tx.send(i).await.is_err() {
                break;
            }
        }
    });
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(flavor = "current_thread")]
async fn ready_takes_only_what_is_there() {
    let mut s = one_per_turn(10);
    assert_eq!(s.next().await, Some(0));
    // The producer was woken by the hand-over but has not run yet.
    assert_eq!(next_ready(&mut s, Gather::Ready).await, None);
}

#[tokio::test(flavor = "current_thread")]
async fn burst_gathers_what_arrives_turn_by_turn() {
    let mut s = one_per_turn(50);
    assert_eq!(s.next().await, Some(0));
    let mut got = vec![0];
    while let Some(item) = next_ready(&mut s, Gather::Burst).await {
        match item {
            Some(i) => got.push(i),
            None => break,
        }
    }
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}

#[tokio::test(flavor = "current_thread")]
async fn requeue_lets_the_tasks_already_woken_run_first() {
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = ran.clone();
    let task = tokio::spawn(async move {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    requeue().await;
    assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn burst_gathers_on_the_multi_thread_runtime_too() {
    // The gateway's default runtime: a task woken from inside another goes to its
    // worker's LIFO slot, ahead of a task that requeued itself.
    let handle = tokio::spawn(async {
        let mut s = one_per_turn(50);
        assert_eq!(s.next().await, Some(0));
        let mut got = vec![0];
        while let Some(Some(i)) = next_ready(&mut s, Gather::Burst).await {
            got.push(i);
        }
        got
    });
    assert_eq!(handle.await.unwrap(), (0..50).collect::<Vec<_>>());
}

#[tokio::test(flavor = "current_thread")]
async fn burst_stops_when_nothing_comes() {
    let (_tx, mut rx) = tokio::sync::mpsc::channel::<usize>(1);
    let mut s = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    assert_eq!(next_ready(&mut s, Gather::Burst).await, None);
}

/// An upstream body of `chunks`, then either its end or (`stall`) silence.
fn upstream(chunks: &[&'static str], stall: bool) -> UpstreamResponse {
    let items: Vec<Result<Bytes, std::io::Error>> = chunks
        .iter()
        .map(|c| Ok(Bytes::from_static(c.as_bytes())))
        .collect();
    let body = futures_util::stream::iter(items);
    let body: ByteStream = if stall {
        Box::pin(body.chain(futures_util::stream::pending()))
    } else {
        Box::pin(body)
    };
    let frames = body.map(|chunk| chunk.map(Frame::data).map_err(BodyError::from));
    http::Response::new(StreamBody::new(frames).boxed_unsync())
}

type ByteStream =
    Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static>>;

#[tokio::test]
async fn a_stream_cut_or_stalled_inside_an_event_says_so() {
    const FIRST: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n";
    const PARTIAL: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"con";
    let mut out = Vec::new();
    let mut closed = UpstreamEvents::new(
        upstream(&[FIRST, PARTIAL], false),
        Dialect::OpenAiChat,
        u64::MAX,
    );
    assert!(
        closed
            .next_batch(&mut out, Duration::from_secs(5), Gather::Ready)
            .await
            .unwrap()
    );
    assert!(
        out.contains(&StreamEvent::TextDelta("hi".into())),
        "{out:?}"
    );
    let e = closed
        .next_batch(&mut out, Duration::from_secs(5), Gather::Ready)
        .await
        .unwrap_err();
    assert!(e.message().contains("inside an unfinished event"), "{e}");

    let mut stalled = UpstreamEvents::new(
        upstream(&[FIRST, PARTIAL], true),
        Dialect::OpenAiChat,
        u64::MAX,
    );
    stalled
        .next_batch(&mut out, Duration::from_secs(5), Gather::Ready)
        .await
        .unwrap();
    let e = stalled
        .next_batch(&mut out, Duration::from_millis(50), Gather::Ready)
        .await
        .unwrap_err();
    assert!(e.message().contains("did not finish"), "{e}");

    // A finished message followed by a comment line, then the close, is a clean end.
    const DONE: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    let mut finished = UpstreamEvents::new(
        upstream(&[FIRST, DONE, ": keep-alive"], false),
        Dialect::OpenAiChat,
        u64::MAX,
    );
    let mut more = true;
    while more {
        more = finished
            .next_batch(&mut out, Duration::from_secs(5), Gather::Ready)
            .await
            .unwrap();
    }
    assert!(finished.finished());
    // A clean end and plain silence keep their own words.
    let mut clean = UpstreamEvents::new(upstream(&[FIRST], false), Dialect::OpenAiChat, u64::MAX);
    clean
        .next_batch(&mut out, Duration::from_secs(5), Gather::Ready)
        .await
        .unwrap();
    assert!(
        !clean
            .next_batch(&mut out, Duration::from_secs(5), Gather::Ready)
            .await
            .unwrap()
    );
    let mut silent = UpstreamEvents::new(upstream(&[FIRST], true), Dialect::OpenAiChat, u64::MAX);
    silent
        .next_batch(&mut out, Duration::from_secs(5), Gather::Ready)
        .await
        .unwrap();
    let e = silent
        .next_batch(&mut out, Duration::from_millis(50), Gather::Ready)
        .await
        .unwrap_err();
    assert!(e.message().contains("sent nothing"), "{e}");
}

#[tokio::test]
async fn an_event_past_the_size_limit_fails_the_stream() {
    const FIRST: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n";
    // Whole events of any number stay within the limit; one that never ends does not.
    let endless: Vec<&'static str> = std::iter::once(FIRST)
        .chain(std::iter::once(
            "data: {\"choices\":[{\"index\":0,\"delta\":",
        ))
        .chain(std::iter::repeat_n("\"content\":\"xxxxxxxxxxxxxxxx\"", 200))
        .collect();
    let mut out = Vec::new();
    let mut events = UpstreamEvents::new(upstream(&endless, true), Dialect::OpenAiChat, 1024);
    let mut result = Ok(true);
    while let Ok(true) = result {
        result = events
            .next_batch(&mut out, Duration::from_secs(5), Gather::Burst)
            .await;
    }
    let e = result.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadUpstreamResponse, "{e}");
    assert!(e.message().contains("larger than max_response_size"), "{e}");
    assert!(
        out.contains(&StreamEvent::TextDelta("hi".into())),
        "{out:?}"
    );

    let many: Vec<&'static str> = std::iter::repeat_n(FIRST, 100).collect();
    let mut events = UpstreamEvents::new(upstream(&many, false), Dialect::OpenAiChat, 100);
    out.clear();
    while events
        .next_batch(&mut out, Duration::from_secs(5), Gather::Burst)
        .await
        .unwrap()
    {}
    assert_eq!(
        out.iter()
            .filter(|e| matches!(e, StreamEvent::TextDelta(_)))
            .count(),
        100
    );
}
