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
    pub model: String,
    pub messages: Vec<Message>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// The caller asked for a usage event at the end of the stream (OpenAI `stream_options`).
    pub include_usage: bool,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
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
    pub dialect: Option<Dialect>,
    pub fields: Map<String, Value>,
}

impl Extra {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    /// Results of tool calls. Anthropic carries these inside user messages; the codecs
    /// convert between the two shapes.
    Tool,
}

#[derive(Clone, Debug)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
    pub extra: Extra,
}

impl Message {
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
    Text {
        text: String,
        extra: Extra,
    },
    Image {
        source: ImageSource,
        extra: Extra,
    },
    ToolCall(ToolCall),
    ToolResult {
        call_id: String,
        content: Vec<Part>,
        is_error: bool,
        extra: Extra,
    },
    Reasoning {
        text: String,
        /// Anthropic's thinking signature; it must go back verbatim on the next turn.
        signature: Option<String>,
    },
    /// A content block only its own dialect understands (an Anthropic `document`, an
    /// OpenAI `input_audio`): replayed to that dialect, dropped for any other.
    Opaque {
        dialect: Dialect,
        value: Value,
    },
}

impl Part {
    pub fn text(text: impl Into<String>) -> Self {
        Part::Text {
            text: text.into(),
            extra: Extra::default(),
        }
    }
}

#[derive(Clone, Debug)]
pub enum ImageSource {
    Url(String),
    Base64 { media_type: String, data: String },
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

    pub fn to_url(&self) -> String {
        match self {
            ImageSource::Url(u) => u.clone(),
            ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as JSON text: OpenAI carries them as a string, Anthropic as an object.
    pub arguments: String,
}

#[derive(Clone, Debug)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Value,
    pub extra: Extra,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    Tool(String),
}

/// A complete (non-streamed) model answer.
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub id: String,
    pub model: String,
    /// Text, reasoning and tool calls, in the order the model produced them.
    pub content: Vec<Part>,
    pub finish: FinishReason,
    pub usage: Usage,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum FinishReason {
    #[default]
    Stop,
    StopSequence,
    Length,
    ToolCalls,
    ContentFilter,
    Other(String),
}

/// Token counts, normalised: `input_tokens` includes cached tokens (OpenAI's convention),
/// `output_tokens` includes reasoning tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub output_tokens: u64,
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
        id: String,
        model: String,
    },
    TextDelta(String),
    ReasoningDelta(String),
    ReasoningSignature(String),
    /// A tool call began. `index` counts tool calls within the message from 0.
    ToolCallStart {
        index: u32,
        id: String,
        name: String,
    },
    ToolCallDelta {
        index: u32,
        arguments: String,
    },
    ToolCallEnd {
        index: u32,
    },
    Usage(Usage),
    Finish(FinishReason),
    /// The upstream reported an error mid-stream.
    Error(String),
}
