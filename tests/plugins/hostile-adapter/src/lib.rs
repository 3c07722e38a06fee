//! A provider adapter that misbehaves on demand, for the host's failover tests. Its config
//! `{"mode": "..."}` picks how: `trap` (panics, a WebAssembly trap), `loop` (never returns;
//! the call deadline stops it), `refuse` (encode-request returns an error), `bad-request`
//! (an HTTP request with an invalid header name). Without a config it traps.

use std::sync::Mutex;

use bitrouter_plugin::adapter::*;

static MODE: Mutex<String> = Mutex::new(String::new());

struct Hostile;

fn mode() -> String {
    MODE.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Adapter for Hostile {
    fn configure(config: &str) -> Result<(), String> {
        // No JSON parser here: the test configs are `{"mode":"<word>"}`.
        let mode = config
            .split('"')
            .nth(3)
            .filter(|_| config.contains("\"mode\""))
            .unwrap_or("trap");
        *MODE.lock().unwrap_or_else(|p| p.into_inner()) = mode.to_owned();
        Ok(())
    }

    fn encode_request(_request: Request, _model_id: &str) -> Result<HttpRequest, String> {
        match mode().as_str() {
            "loop" => {
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "refuse" => Err("hostile adapter refuses every request".into()),
            "bad-request" => Ok(HttpRequest {
                method: "POST".into(),
                path: "/v1/chat".into(),
                headers: vec![("bad header".into(), "x".into())],
                body: Vec::new(),
            }),
            _ => panic!("hostile adapter traps on purpose"),
        }
    }

    fn decode_response(_response: HttpResponse) -> Result<Response, UpstreamError> {
        panic!("hostile adapter traps on purpose")
    }

    fn decode_stream(
        _state: Vec<u8>,
        _chunk: Vec<u8>,
        _end: bool,
    ) -> Result<StreamStep, UpstreamError> {
        panic!("hostile adapter traps on purpose")
    }
}

bitrouter_plugin::export_adapter!(Hostile);
