//! The canonical request, response and stream events that every dialect decodes into and
//! encodes from. No I/O here: a dialect pair (caller ⇄ upstream) meets only through these types.

use serde_json::{Map, Value};

/// The wire dialects the gateway speaks, on either side of the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    OpenAiChat,
    /// OpenAI Responses (`/v1/responses`).
    OpenAiResponses,
    /// Anthropic Messages (`/v1/messages`).
    Anthropic,
    /// Google Gemini `generateContent` (`/v1beta/models/{model}:generateContent`).
    Gemini,
}

impl Dialect {
    /// The dialect's name as `api_protocol` spells it (`openai`, `openai_responses`, `anthropic`,
    /// `google`).
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAiChat => "openai",
            // The same name as its `api_protocol`, like the others.
            Dialect::OpenAiResponses => "openai_responses",
            Dialect::Anthropic => "anthropic",
            Dialect::Gemini => "google",
        }
    }
}

/// How the gateway talks to a provider: `api_protocol` in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// A dialect the gateway speaks itself (`openai`, `openai_responses`, `anthropic`,
    /// `google`).
    Native(Dialect),
    /// Through the provider's adapter plugin (`plugin`), looked up by provider name in the
    /// loaded plugins, so a reload swaps it.
    Adapter,
}

impl Protocol {
    /// Every `api_protocol` value, as the config spells it.
    pub const NAMES: &[&str] = &[
        "openai",
        "openai_responses",
        "anthropic",
        "google",
        "plugin",
    ];

    /// The protocol an `api_protocol` value names.
    pub fn parse(name: &str) -> Option<Protocol> {
        Some(match name {
            "openai" => Protocol::Native(Dialect::OpenAiChat),
            "openai_responses" => Protocol::Native(Dialect::OpenAiResponses),
            "anthropic" => Protocol::Native(Dialect::Anthropic),
            "google" => Protocol::Native(Dialect::Gemini),
            "plugin" => Protocol::Adapter,
            _ => return None,
        })
    }

    /// The `api_protocol` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Native(d) => d.as_str(),
            Protocol::Adapter => "plugin",
        }
    }
}

impl<'de> serde::Deserialize<'de> for Protocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Protocol::parse(&name)
            .ok_or_else(|| serde::de::Error::unknown_variant(&name, Protocol::NAMES))
    }
}

impl serde::Serialize for Protocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A model call, independent of the dialect it arrived in.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// The model name the caller asked for; the router maps it to targets.
    pub model: String,
    /// The conversation, system prompt included, in order.
    pub messages: Vec<Message>,
    /// Cap on generated tokens (`max_tokens`, `max_output_tokens`, `maxOutputTokens`).
    pub max_tokens: Option<u64>,
    /// Sampling temperature, passed through as given.
    pub temperature: Option<f64>,
    /// Nucleus-sampling cutoff, passed through as given.
    pub top_p: Option<f64>,
    /// Sequences that end generation when produced.
    pub stop: Vec<String>,
    /// The caller wants the answer as a stream of events rather than one body.
    pub stream: bool,
    /// The caller asked for a usage event at the end of the stream (OpenAI `stream_options`).
    pub include_usage: bool,
    /// Tools the model may call.
    pub tools: Vec<Tool>,
    /// Whether and which tool the model must call; `None` leaves it to the upstream's default.
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may call several tools in one turn (OpenAI `parallel_tool_calls`).
    pub parallel_tool_calls: Option<bool>,
    /// Fields of the caller's dialect that have no canonical meaning; re-emitted untouched
    /// when the upstream speaks the same dialect, dropped otherwise.
    pub extra: Extra,
}

impl Request {
    /// A rough token count of the prompt (4 bytes per token), for charging a stream that was
    /// cut before the upstream reported usage.
    pub fn estimate_input_tokens(&self) -> u64 {
        fn part_bytes(p: &Part) -> usize {
            match p {
                Part::Text { text, .. } | Part::Reasoning { text, .. } => text.len(),
                Part::ToolCall(c) => c.name.len() + c.arguments.len(),
                Part::ToolResult { content, .. } => content.iter().map(part_bytes).sum(),
                Part::Image { .. } | Part::Opaque { .. } => 0,
            }
        }
        let bytes: usize = self
            .messages
            .iter()
            .flat_map(|m| &m.content)
            .map(part_bytes)
            .sum::<usize>()
            + self
                .tools
                .iter()
                .map(|t| t.name.len() + t.parameters.to_string().len())
                .sum::<usize>();
        bytes.div_ceil(4) as u64
    }
}

/// Unmodelled fields, tagged with the dialect they came from so they are only ever
/// replayed to a peer that understands them.
#[derive(Clone, Debug, Default)]
pub struct Extra {
    /// The dialect the fields came from; `None` when there are none.
    pub dialect: Option<Dialect>,
    /// The fields, by their wire name.
    pub fields: Map<String, Value>,
}

impl Extra {
    /// Fields taken from a `dialect` message, to be replayed only to that dialect.
    pub fn new(dialect: Dialect, fields: Map<String, Value>) -> Self {
        Extra {
            dialect: Some(dialect),
            fields,
        }
    }

    /// The fields to replay to a peer speaking `dialect` (empty for any other dialect).
    pub fn for_dialect(&self, dialect: Dialect) -> Option<&Map<String, Value>> {
        (self.dialect == Some(dialect) && !self.fields.is_empty()).then_some(&self.fields)
    }
}

/// Who speaks a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// System prompt (Anthropic and Gemini carry it outside the message list).
    System,
    /// The caller's turn.
    User,
    /// The model's turn.
    Assistant,
    /// Results of tool calls. Anthropic carries these inside user messages; the codecs
    /// convert between the two shapes.
    Tool,
}

/// One turn of the conversation.
#[derive(Clone, Debug)]
pub struct Message {
    /// Who speaks it.
    pub role: Role,
    /// Its content, in order.
    pub content: Vec<Part>,
    /// Unmodelled fields of the message in the caller's dialect.
    pub extra: Extra,
}

impl Message {
    /// A message of one text part.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: vec![Part::text(text)],
            extra: Extra::default(),
        }
    }
}

/// One piece of message content.
#[derive(Clone, Debug)]
pub enum Part {
    /// Plain text.
    Text {
        /// The text itself.
        text: String,
        /// Unmodelled fields of the block in its dialect.
        extra: Extra,
    },
    /// An image input.
    Image {
        /// Where the image bytes are.
        source: ImageSource,
        /// Unmodelled fields of the block in its dialect.
        extra: Extra,
    },
    /// A tool call the model made.
    ToolCall(ToolCall),
    /// The answer to an earlier tool call.
    ToolResult {
        /// The `id` of the [`ToolCall`] this answers.
        call_id: String,
        /// The result, usually text.
        content: Vec<Part>,
        /// The tool reported failure (Anthropic `is_error`).
        is_error: bool,
        /// Unmodelled fields of the block in its dialect.
        extra: Extra,
    },
    /// The model's reasoning (thinking) text.
    Reasoning {
        /// The reasoning text itself.
        text: String,
        /// Anthropic's thinking signature; it must go back verbatim on the next turn.
        signature: Option<String>,
    },
    /// A content block only its own dialect understands (an Anthropic `document`, an
    /// OpenAI `input_audio`): replayed to that dialect, dropped for any other.
    Opaque {
        /// The dialect that understands it.
        dialect: Dialect,
        /// The block as it arrived.
        value: Value,
    },
}

impl Part {
    /// A text part with no extra fields.
    pub fn text(text: impl Into<String>) -> Self {
        Part::Text {
            text: text.into(),
            extra: Extra::default(),
        }
    }
}

/// Where an image's bytes are.
#[derive(Clone, Debug)]
pub enum ImageSource {
    /// A URL the upstream fetches (`http(s)://…`).
    Url(String),
    /// Inline bytes.
    Base64 {
        /// The MIME type, e.g. `image/png`.
        media_type: String,
        /// The bytes, base64-encoded.
        data: String,
    },
}

impl ImageSource {
    /// Parses a `data:<media>;base64,<data>` URL into its parts; any other URL stays a URL.
    pub fn from_url(url: &str) -> Self {
        if let Some(rest) = url.strip_prefix("data:")
            && let Some((media_type, data)) = rest.split_once(";base64,")
        {
            return ImageSource::Base64 {
                media_type: media_type.to_owned(),
                data: data.to_owned(),
            };
        }
        ImageSource::Url(url.to_owned())
    }

    /// The image as a URL: a `data:` URL for inline bytes.
    pub fn to_url(&self) -> String {
        match self {
            ImageSource::Url(u) => u.clone(),
            ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        }
    }
}

/// A call of one of the request's tools by the model.
#[derive(Clone, Debug)]
pub struct ToolCall {
    /// The call's id, echoed by the tool result that answers it.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments as JSON text: OpenAI carries them as a string, Anthropic as an object.
    pub arguments: String,
}

/// A tool the caller offers the model.
#[derive(Clone, Debug)]
pub struct Tool {
    /// The name the model calls it by.
    pub name: String,
    /// What the tool does, for the model.
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Value,
    /// Unmodelled fields of the tool definition in the caller's dialect.
    pub extra: Extra,
}

/// Whether and which tool the model must call.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// The model must not call tools.
    None,
    /// The model must call some tool.
    Required,
    /// The model must call the tool of this name.
    Tool(String),
}

/// A complete (non-streamed) model answer.
#[derive(Clone, Debug, Default)]
pub struct Response {
    /// The upstream's id for the answer.
    pub id: String,
    /// The model that answered, as the upstream names it.
    pub model: String,
    /// Text, reasoning and tool calls, in the order the model produced them.
    pub content: Vec<Part>,
    /// Why generation stopped.
    pub finish: FinishReason,
    /// Tokens the call used.
    pub usage: Usage,
}

/// Why the model stopped generating.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum FinishReason {
    /// A natural end of turn (`stop`, `end_turn`, `STOP`).
    #[default]
    Stop,
    /// One of the request's stop sequences was produced (Anthropic `stop_sequence`).
    StopSequence,
    /// The token cap was reached (`length`, `max_tokens`, `MAX_TOKENS`).
    Length,
    /// The model stopped to call tools (`tool_calls`, `tool_use`).
    ToolCalls,
    /// The provider's content filter stopped it (`content_filter`, `refusal`, `SAFETY`).
    ContentFilter,
    /// Any other reason, verbatim from the upstream.
    Other(String),
}

impl FinishReason {
    /// OpenAI's name for the reason (`stop`, `length`, `tool_calls`, `content_filter`;
    /// `stop_sequence` and `other` for the rest), as telemetry reports it.
    pub fn as_str(&self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::StopSequence => "stop_sequence",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Other(_) => "other",
        }
    }
}

/// Token counts, normalised: `input_tokens` includes cached tokens (OpenAI's convention),
/// `output_tokens` includes reasoning tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens, cached ones included (`usage.prompt_tokens`, `usage.input_tokens`).
    pub input_tokens: u64,
    /// Prompt tokens read from the provider's prompt cache.
    pub cache_read_tokens: u64,
    /// Prompt tokens written to the provider's prompt cache (Anthropic `cache_creation_input_tokens`).
    pub cache_write_tokens: u64,
    /// Generated tokens, reasoning included (`usage.completion_tokens`, `usage.output_tokens`).
    pub output_tokens: u64,
    /// Of `output_tokens`, those spent on reasoning.
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Input tokens that were neither read from nor written to a cache.
    pub fn uncached_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_sub(self.cache_read_tokens + self.cache_write_tokens)
    }
}

/// One event of a streamed answer.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// The message began; carries the upstream's id and model.
    Start {
        /// The upstream's id for the answer.
        id: String,
        /// The model that answers, as the upstream names it.
        model: String,
    },
    /// More answer text.
    TextDelta(String),
    /// More reasoning text.
    ReasoningDelta(String),
    /// Anthropic's thinking signature, to go back verbatim on the next turn.
    ReasoningSignature(String),
    /// A tool call began. `index` counts tool calls within the message from 0.
    ToolCallStart {
        /// Which tool call of the message.
        index: u32,
        /// The call's id.
        id: String,
        /// The tool's name.
        name: String,
    },
    /// More of a tool call's JSON arguments.
    ToolCallDelta {
        /// Which tool call of the message.
        index: u32,
        /// The next piece of the arguments' JSON text.
        arguments: String,
    },
    /// A tool call's arguments are complete.
    ToolCallEnd {
        /// Which tool call of the message.
        index: u32,
    },
    /// Token counts, usually near the end of the stream.
    Usage(Usage),
    /// Why generation stopped.
    Finish(FinishReason),
    /// The upstream reported an error mid-stream.
    Error(String),
}
