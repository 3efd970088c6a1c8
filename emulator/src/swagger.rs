//! Validates ARM request bodies against the real Azure REST API specs (Swagger / OpenAPI 2.0),
//! the way ARM and the resource provider validate them before accepting a PUT.
//!
//! This module owns the pure validation logic and nothing else: no HTTP, no state. It
//!
//! 1. loads a swagger file and every file its `$ref`s reach (relative to the file that holds the
//!    `$ref`; `x-ms-examples` links are not followed), see [`SwaggerSpec::load`];
//! 2. compiles every schema into one arena of resolved `Node`s (refs become indices, `allOf`
//!    parents are merged into an `ObjectView`, discriminated subtypes are indexed by their
//!    `x-ms-discriminator-value`, ECMAScript `pattern`s are translated and compiled, and any
//!    pattern the `regex` crate cannot run fails the load instead of being skipped);
//! 3. runs one small recursive validator that collects every problem, in a deterministic order,
//!    as a [`ValidationIssue`] (path, ARM-like code, message).
//!
//! The emulator's ARM handlers call [`SwaggerSpec::validate_request_body`] and turn the issues
//! into a 400 with [`ValidationIssue::to_arm_detail`]. The specs themselves live outside the
//! repository; [`SwaggerSpec::default_image_builder_path`] finds them.
//!
//! Rules, and where they deliberately differ from a lenient reading of the spec:
//! - `enum`s are strict and case-sensitive (Image Builder rejects unknown identity types,
//!   `autoRun.state` values and so on), except when `x-ms-enum.modelAsString` is `true`: then the
//!   enum is open and any string is accepted, as AutoRest-generated clients and the spec promise.
//! - `readOnly: true` properties in a request body are refused (`ReadOnlyProperty`), and so are
//!   properties whose `x-ms-mutability` lacks `create` (PUT, POST) or `update` (PATCH).
//! - Properties not in the schema (own, `allOf` parents, discriminated subtype) are refused
//!   (`UnknownProperty`) unless `additionalProperties` allows them; an object schema with no
//!   properties and no `additionalProperties` at all is free-form. Property names are
//!   case-sensitive.
//! - `null` is refused unless the schema says `x-nullable: true` (real ARM often treats `null` as
//!   "absent"; this validator is stricter on purpose, so the task never relies on that).
//! - A discriminated base is abstract: its discriminator must name a subtype (the base itself
//!   only counts when it declares its own `x-ms-discriminator-value`).
//! - `x-ms-client-flatten`, `x-ms-secret`, `x-ms-identifiers`, `default`, `title` and
//!   `description` do not change what is valid and are ignored.
//!
//! Not checked: path, query and header parameters (only the body); `multipleOf`; formats other
//! than `int32`, `int64`, `date-time`, `date`, `uuid`, `uri` and `arm-id` (all loosely); scalar
//! keywords (`enum`, `pattern`, ranges) written in an `allOf` parent rather than on the schema
//! itself; and the rules the specs only state in prose (e.g. "exactly one of `scriptUri` or
//! `inline`", `runAsSystem` needing `runElevated`, `targetRegions` excluding
//! `replicationRegions`). Those belong to the Image Builder emulator, not to schema validation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use anyhow::{Context, anyhow, bail};
use regex::Regex;
use serde_json::{Map, Number, Value};

/// Index of a [`Node`] in [`SwaggerSpec::nodes`].
type NodeId = usize;

/// A loaded and compiled swagger file, ready to validate request bodies.
#[derive(Debug, Clone)]
pub struct SwaggerSpec {
    api_version: String,
    nodes: Vec<Node>,
    /// Merged `allOf` view of each node, same index as `nodes`.
    views: Vec<ObjectView>,
    /// For each node in a discriminated hierarchy: discriminator value → concrete node, limited
    /// to the node itself and its descendants. Same index as `nodes`.
    subtypes: Vec<BTreeMap<String, NodeId>>,
    /// `#/definitions/<name>` of the loaded (top) file.
    definitions: BTreeMap<String, NodeId>,
    /// (upper-case method, normalised path template) → body parameter.
    operations: BTreeMap<(String, String), Operation>,
}

#[derive(Debug, Clone)]
struct Operation {
    body: Option<BodyParameter>,
}

#[derive(Debug, Clone)]
struct BodyParameter {
    name: String,
    required: bool,
    schema: NodeId,
}

/// One problem found in a request body.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationIssue {
    /// Where the problem is, e.g. `properties.customize[1].inline` (empty for the body itself).
    pub path: String,
    pub code: ValidationCode,
    pub message: String,
}

/// ARM-like codes for [`ValidationIssue`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValidationCode {
    /// Wrong JSON type, including `null` where the schema is not `x-nullable`.
    InvalidType,
    RequiredPropertyMissing,
    InvalidEnumValue,
    PatternMismatch,
    /// A string that does not match its `format` (`date-time`, `uuid`, `uri`, ...).
    InvalidFormat,
    /// `minimum`/`maximum` (exclusive or not), or an integer outside its `int32`/`int64` format.
    OutOfRange,
    /// String shorter than `minLength`.
    TooShort,
    /// String longer than `maxLength`.
    TooLong,
    TooFewItems,
    TooManyItems,
    /// Equal items in an array with `uniqueItems: true`.
    DuplicateItems,
    UnknownProperty,
    /// `readOnly` property, or one whose `x-ms-mutability` excludes this kind of request.
    ReadOnlyProperty,
    InvalidDiscriminator,
    /// No such method and path template in the spec.
    UnknownOperation,
    /// No such definition in the spec.
    UnknownDefinition,
}

impl ValidationCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidType => "InvalidType",
            Self::RequiredPropertyMissing => "RequiredPropertyMissing",
            Self::InvalidEnumValue => "InvalidEnumValue",
            Self::PatternMismatch => "PatternMismatch",
            Self::InvalidFormat => "InvalidFormat",
            Self::OutOfRange => "OutOfRange",
            Self::TooShort => "TooShort",
            Self::TooLong => "TooLong",
            Self::TooFewItems => "TooFewItems",
            Self::TooManyItems => "TooManyItems",
            Self::DuplicateItems => "DuplicateItems",
            Self::UnknownProperty => "UnknownProperty",
            Self::ReadOnlyProperty => "ReadOnlyProperty",
            Self::InvalidDiscriminator => "InvalidDiscriminator",
            Self::UnknownOperation => "UnknownOperation",
            Self::UnknownDefinition => "UnknownDefinition",
        }
    }
}

impl fmt::Display for ValidationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ValidationIssue {
    fn new(path: &str, code: ValidationCode, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            code,
            message: message.into(),
        }
    }

    /// ARM error "details" entry: `{"code": ..., "target": path, "message": ...}`.
    pub fn to_arm_detail(&self) -> Value {
        serde_json::json!({
            "code": self.code.as_str(),
            "target": self.path,
            "message": self.message,
        })
    }
}

impl fmt::Display for ValidationIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.code, self.message)
        } else {
            write!(f, "{} at '{}': {}", self.code, self.path, self.message)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Resolved schema representation
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl JsonType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "object" => Self::Object,
            "array" => Self::Array,
            "string" => Self::String,
            "integer" => Self::Integer,
            "number" => Self::Number,
            "boolean" => Self::Boolean,
            _ => return None,
        })
    }

    fn matches(self, value: &Value) -> bool {
        match self {
            Self::Object => value.is_object(),
            Self::Array => value.is_array(),
            Self::String => value.is_string(),
            // 30.0 is a float on the wire; ARM's deserialiser may take it, we do not.
            Self::Integer => value.is_i64() || value.is_u64(),
            Self::Number => value.is_number(),
            Self::Boolean => value.is_boolean(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Object => "object",
            Self::Array => "array",
            Self::String => "string",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[derive(Debug, Clone)]
enum Additional {
    /// `additionalProperties: true`.
    Any,
    /// `additionalProperties: false`.
    Forbidden,
    /// `additionalProperties: {schema}`: every extra value must match it (maps such as `tags`).
    Schema(NodeId),
}

#[derive(Debug, Clone)]
struct Enumeration {
    values: Vec<Value>,
    /// `x-ms-enum.modelAsString: true`: the listed values are known ones, not the only ones.
    open: bool,
}

#[derive(Debug, Clone, Copy)]
struct Bound {
    value: f64,
    exclusive: bool,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// As written in the spec (for messages).
    source: String,
    regex: Regex,
}

/// One compiled schema. A `$ref` that carries its own `readOnly`, `x-nullable` or
/// `x-ms-mutability` becomes a node with `reference` set: those flags apply, everything else
/// comes from the target. Scalar keywords (`enum`, `pattern`, ranges, `format`) are taken from the
/// node itself, not from its `allOf` parents (the specs never put them there).
#[derive(Debug, Clone, Default)]
struct Node {
    /// `<name>` when the node is `#/definitions/<name>` of some file.
    name: Option<String>,
    reference: Option<NodeId>,
    ty: Option<JsonType>,
    format: Option<String>,
    nullable: Option<bool>,
    read_only: bool,
    mutability: Option<Vec<String>>,
    properties: BTreeMap<String, NodeId>,
    required: Vec<String>,
    additional: Option<Additional>,
    all_of: Vec<NodeId>,
    items: Option<NodeId>,
    enumeration: Option<Enumeration>,
    pattern: Option<Pattern>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    minimum: Option<Bound>,
    maximum: Option<Bound>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    unique_items: bool,
    discriminator: Option<String>,
    discriminator_value: Option<String>,
}

/// A node's object shape with every `allOf` parent merged in (own declarations win).
#[derive(Debug, Clone, Default)]
struct ObjectView {
    ty: Option<JsonType>,
    properties: BTreeMap<String, NodeId>,
    required: BTreeSet<String>,
    additional: Option<Additional>,
    discriminator: Option<String>,
}

/// Flags collected along a chain of `$ref` nodes; the nearest explicit one wins.
#[derive(Debug, Default)]
struct RefFlags<'a> {
    read_only: bool,
    nullable: Option<bool>,
    mutability: Option<&'a [String]>,
}

// ---------------------------------------------------------------------------------------------
// Loading and compiling
// ---------------------------------------------------------------------------------------------

const HTTP_METHODS: [&str; 7] = ["get", "put", "post", "patch", "delete", "head", "options"];

/// Keys next to a `$ref` that change validation; any other sibling is documentation.
const REF_FLAG_KEYS: [&str; 3] = ["readOnly", "x-nullable", "x-ms-mutability"];

struct LoadedFile {
    path: PathBuf,
    json: Value,
}

#[derive(Default)]
struct Compiler {
    files: Vec<LoadedFile>,
    file_index: HashMap<PathBuf, usize>,
    nodes: Vec<Node>,
    /// (file, JSON pointer) → node, so each referenced schema is compiled once.
    by_pointer: HashMap<(usize, String), NodeId>,
    regexes: HashMap<String, Regex>,
}

impl Compiler {
    /// Loads `path` (once) and, recursively, every file its `$ref`s name.
    fn load_file(&mut self, path: &Path) -> anyhow::Result<usize> {
        let path = path
            .canonicalize()
            .with_context(|| format!("swagger file {} not found", path.display()))?;
        if let Some(&index) = self.file_index.get(&path) {
            return Ok(index);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading swagger file {}", path.display()))?;
        let json: Value = serde_json::from_str(&text)
            .with_context(|| format!("parsing swagger file {}", path.display()))?;
        let mut referenced = BTreeSet::new();
        collect_ref_files(&json, &mut referenced);
        let index = self.files.len();
        self.file_index.insert(path.clone(), index);
        self.files.push(LoadedFile { path, json });
        for file in referenced {
            let target = self.sibling_path(index, &file);
            self.load_file(&target)
                .with_context(|| format!("following $ref to {file}"))?;
        }
        Ok(index)
    }

    fn sibling_path(&self, file: usize, relative: &str) -> PathBuf {
        let dir = self.files[file].path.parent().unwrap_or(Path::new("/"));
        dir.join(relative)
    }

    /// Splits a `$ref` into (file index, JSON pointer), loading the file if needed.
    fn resolve_ref(&mut self, from: usize, reference: &str) -> anyhow::Result<(usize, String)> {
        let (file_part, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let file = if file_part.is_empty() {
            from
        } else {
            let path = self.sibling_path(from, file_part);
            self.load_file(&path)?
        };
        if self.files[file].json.pointer(pointer).is_none() {
            bail!(
                "$ref {reference} (from {}) points at nothing",
                self.files[from].path.display()
            );
        }
        Ok((file, pointer.to_owned()))
    }

    fn json_at(&self, file: usize, pointer: &str) -> &Value {
        self.files[file]
            .json
            .pointer(pointer)
            .expect("pointer checked by resolve_ref")
    }

    /// The node for a `$ref`, compiling the target the first time it is reached.
    fn compile_ref(&mut self, from: usize, reference: &str) -> anyhow::Result<NodeId> {
        let (file, pointer) = self.resolve_ref(from, reference)?;
        if let Some(&id) = self.by_pointer.get(&(file, pointer.clone())) {
            return Ok(id);
        }
        // Reserve the slot first so recursive schemas (ErrorDetail.details) terminate.
        let id = self.nodes.len();
        self.nodes.push(Node::default());
        self.by_pointer.insert((file, pointer.clone()), id);
        let json = self.json_at(file, &pointer).clone();
        let mut node = self.compile_node(file, &json, &pointer)?;
        node.name = pointer
            .strip_prefix("/definitions/")
            .filter(|name| !name.contains('/'))
            .map(|name| name.replace("~1", "/").replace("~0", "~"));
        self.nodes[id] = node;
        Ok(id)
    }

    /// The node for a schema written in place (a property, `items`, `allOf` part...).
    fn compile_inline(&mut self, file: usize, json: &Value, at: &str) -> anyhow::Result<NodeId> {
        if let Some(reference) = json.get("$ref").and_then(Value::as_str) {
            let has_flags = REF_FLAG_KEYS.iter().any(|key| json.get(key).is_some());
            if !has_flags {
                return self.compile_ref(file, reference);
            }
        }
        let node = self.compile_node(file, json, at)?;
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    fn compile_node(&mut self, file: usize, json: &Value, at: &str) -> anyhow::Result<Node> {
        self.compile_node_inner(file, json, at)
            .with_context(|| format!("compiling schema {}#{at}", self.files[file].path.display()))
    }

    fn compile_node_inner(&mut self, file: usize, json: &Value, at: &str) -> anyhow::Result<Node> {
        let schema = json
            .as_object()
            .ok_or_else(|| anyhow!("a schema must be an object"))?;
        let mut node = Node {
            read_only: bool_key(schema, "readOnly")?.unwrap_or(false),
            nullable: bool_key(schema, "x-nullable")?,
            mutability: match schema.get("x-ms-mutability") {
                None => None,
                Some(list) => Some(string_list(list).context("x-ms-mutability")?),
            },
            ..Node::default()
        };
        if let Some(reference) = schema.get("$ref") {
            let reference = reference
                .as_str()
                .ok_or_else(|| anyhow!("$ref must be a string"))?;
            node.reference = Some(self.compile_ref(file, reference)?);
            return Ok(node);
        }
        if let Some(ty) = schema.get("type") {
            let ty = ty
                .as_str()
                .ok_or_else(|| anyhow!("type must be a string"))?;
            node.ty = Some(JsonType::parse(ty).ok_or_else(|| anyhow!("unsupported type {ty:?}"))?);
        }
        node.format = string_key(schema, "format")?;
        if let Some(properties) = schema.get("properties") {
            let properties = properties
                .as_object()
                .ok_or_else(|| anyhow!("properties must be an object"))?;
            for (name, property) in properties {
                let id = self.compile_inline(file, property, &format!("{at}/properties/{name}"))?;
                node.properties.insert(name.clone(), id);
            }
        }
        if let Some(required) = schema.get("required") {
            node.required = string_list(required).context("required")?;
        }
        node.additional = match schema.get("additionalProperties") {
            None => None,
            Some(Value::Bool(true)) => Some(Additional::Any),
            Some(Value::Bool(false)) => Some(Additional::Forbidden),
            Some(extra) => Some(Additional::Schema(self.compile_inline(
                file,
                extra,
                &format!("{at}/additionalProperties"),
            )?)),
        };
        if let Some(parts) = schema.get("allOf") {
            let parts = parts
                .as_array()
                .ok_or_else(|| anyhow!("allOf must be an array"))?;
            for (i, part) in parts.iter().enumerate() {
                let id = self.compile_inline(file, part, &format!("{at}/allOf/{i}"))?;
                node.all_of.push(id);
            }
        }
        if let Some(items) = schema.get("items") {
            if !items.is_object() {
                bail!("items must be a single schema");
            }
            node.items = Some(self.compile_inline(file, items, &format!("{at}/items"))?);
        }
        if let Some(values) = schema.get("enum") {
            let values = values
                .as_array()
                .ok_or_else(|| anyhow!("enum must be an array"))?;
            let open = schema
                .get("x-ms-enum")
                .and_then(|x| x.get("modelAsString"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            node.enumeration = Some(Enumeration {
                values: values.clone(),
                open,
            });
        }
        if let Some(source) = string_key(schema, "pattern")? {
            let regex = match self.regexes.get(&source) {
                Some(regex) => regex.clone(),
                None => {
                    let translated = translate_ecma_pattern(&source)?;
                    let regex = Regex::new(&translated).with_context(|| {
                        format!("pattern {source:?} (as {translated:?}) does not compile")
                    })?;
                    self.regexes.insert(source.clone(), regex.clone());
                    regex
                }
            };
            node.pattern = Some(Pattern { source, regex });
        }
        node.min_length = u64_key(schema, "minLength")?;
        node.max_length = u64_key(schema, "maxLength")?;
        node.min_items = u64_key(schema, "minItems")?;
        node.max_items = u64_key(schema, "maxItems")?;
        node.unique_items = bool_key(schema, "uniqueItems")?.unwrap_or(false);
        node.minimum = bound(schema, "minimum", "exclusiveMinimum")?;
        node.maximum = bound(schema, "maximum", "exclusiveMaximum")?;
        node.discriminator = string_key(schema, "discriminator")?;
        node.discriminator_value = string_key(schema, "x-ms-discriminator-value")?;
        Ok(node)
    }

    /// Resolves a parameter (possibly a `$ref` into another file) to (file, parameter JSON).
    fn parameter(&mut self, file: usize, json: &Value) -> anyhow::Result<(usize, Value)> {
        match json.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let (file, pointer) = self.resolve_ref(file, reference)?;
                let json = self.json_at(file, &pointer).clone();
                self.parameter(file, &json)
            }
            None => Ok((file, json.clone())),
        }
    }
}

/// Adds the file part of every `$ref` in `json` to `out`, except under `x-ms-examples`.
fn collect_ref_files(json: &Value, out: &mut BTreeSet<String>) {
    match json {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("x-ms-examples", _) => {}
                    ("$ref", Value::String(reference)) => {
                        let file = reference.split('#').next().unwrap_or_default();
                        if !file.is_empty() {
                            out.insert(file.to_owned());
                        }
                    }
                    _ => collect_ref_files(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_ref_files(item, out)),
        _ => {}
    }
}

fn bool_key(schema: &Map<String, Value>, key: &str) -> anyhow::Result<Option<bool>> {
    schema
        .get(key)
        .map(|v| {
            v.as_bool()
                .ok_or_else(|| anyhow!("{key} must be a boolean"))
        })
        .transpose()
}

fn string_key(schema: &Map<String, Value>, key: &str) -> anyhow::Result<Option<String>> {
    schema
        .get(key)
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("{key} must be a string"))
        })
        .transpose()
}

fn u64_key(schema: &Map<String, Value>, key: &str) -> anyhow::Result<Option<u64>> {
    schema
        .get(key)
        .map(|v| {
            v.as_u64()
                .ok_or_else(|| anyhow!("{key} must be a non-negative integer"))
        })
        .transpose()
}

fn bound(schema: &Map<String, Value>, key: &str, exclusive: &str) -> anyhow::Result<Option<Bound>> {
    let Some(value) = schema.get(key) else {
        return Ok(None);
    };
    let value = value
        .as_f64()
        .ok_or_else(|| anyhow!("{key} must be a number"))?;
    let exclusive = bool_key(schema, exclusive)?.unwrap_or(false);
    Ok(Some(Bound { value, exclusive }))
}

fn string_list(value: &Value) -> anyhow::Result<Vec<String>> {
    value
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .ok_or_else(|| anyhow!("must be an array of strings"))
}

/// `/a/{x}/B/{y}` → `/a/{}/b/{}`: ARM paths are case-insensitive and parameter names do not
/// matter when matching a template.
fn normalize_path_template(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut in_parameter = false;
    for c in template.chars() {
        match c {
            '{' => {
                in_parameter = true;
                out.push('{');
            }
            '}' => {
                in_parameter = false;
                out.push('}');
            }
            _ if in_parameter => {}
            _ => out.extend(c.to_lowercase()),
        }
    }
    out.trim_end_matches('/').to_owned()
}

/// Translates an ECMAScript regular expression (as swagger `pattern`s are written) into the
/// `regex` crate's syntax: `\d`, `\w` and their negations become ASCII classes as in ECMAScript,
/// a `-` that ECMAScript reads as a literal inside a class is escaped, `\uXXXX` becomes
/// `\x{XXXX}`, a `{` that is not a quantifier is escaped, and escaped punctuation is re-escaped
/// the way `regex` wants it. Features the `regex` crate has no equivalent for (look-around,
/// back-references) are an error, so an untranslatable pattern fails the load loudly.
fn translate_ecma_pattern(pattern: &str) -> anyhow::Result<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let (atom, used) = translate_escape(&chars[i + 1..], false)
                    .with_context(|| format!("in pattern {pattern:?}"))?;
                out.push_str(&atom.outside_class());
                i += 1 + used;
            }
            '[' => {
                i = translate_class(&chars, i, &mut out)
                    .with_context(|| format!("in pattern {pattern:?}"))?;
            }
            '(' if chars.get(i + 1) == Some(&'?') => {
                let rest: String = chars[i + 2..].iter().take(2).collect();
                if rest.starts_with('=') || rest.starts_with('!') || rest == "<=" || rest == "<!" {
                    bail!("look-around in pattern {pattern:?} is not supported");
                }
                out.push('(');
                i += 1;
            }
            '{' => {
                let quantifier: String = chars[i..]
                    .iter()
                    .take_while(|&&c| c != '}')
                    .chain(std::iter::once(&'}'))
                    .collect();
                if QUANTIFIER.is_match(&quantifier) && chars[i..].contains(&'}') {
                    out.push_str(&quantifier);
                    i += quantifier.chars().count();
                } else {
                    out.push_str("\\{");
                    i += 1;
                }
            }
            '}' => {
                out.push_str("\\}");
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

static QUANTIFIER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\{[0-9]+(,[0-9]*)?\}$").expect("valid regex"));

/// One translated escape sequence.
enum EscapeAtom {
    /// A single character (can be a range end inside a class).
    Char(char),
    /// A class such as `[:word:]` (inside a class) or `\s`.
    Class { inside: String, outside: String },
    /// An assertion such as `\b`, only valid outside a class.
    Assertion(String),
}

impl EscapeAtom {
    fn outside_class(&self) -> String {
        match self {
            Self::Char(c) => escape_char(*c),
            Self::Class { outside, .. } => outside.clone(),
            Self::Assertion(a) => a.clone(),
        }
    }
}

fn escape_char(c: char) -> String {
    if c.is_ascii_alphanumeric() || c == '_' || c == ' ' {
        c.to_string()
    } else if c.is_ascii_punctuation() {
        regex::escape(&c.to_string())
    } else {
        format!("\\x{{{:X}}}", c as u32)
    }
}

/// Translates the escape whose text (after the backslash) starts at `rest`; returns the atom and
/// how many characters after the backslash it used.
fn translate_escape(rest: &[char], in_class: bool) -> anyhow::Result<(EscapeAtom, usize)> {
    let Some(&c) = rest.first() else {
        bail!("pattern ends with a lone backslash");
    };
    let class = |inside: &str, outside: &str| EscapeAtom::Class {
        inside: inside.to_owned(),
        outside: outside.to_owned(),
    };
    let atom = match c {
        'd' => class("[:digit:]", "[0-9]"),
        'D' => class("[:^digit:]", "[^0-9]"),
        'w' => class("[:word:]", "[0-9A-Za-z_]"),
        'W' => class("[:^word:]", "[^0-9A-Za-z_]"),
        's' => class("\\s", "\\s"),
        'S' => class("\\S", "\\S"),
        'b' if in_class => EscapeAtom::Char('\u{8}'),
        'b' | 'B' => EscapeAtom::Assertion(format!("\\{c}")),
        'n' => EscapeAtom::Char('\n'),
        'r' => EscapeAtom::Char('\r'),
        't' => EscapeAtom::Char('\t'),
        'f' => EscapeAtom::Char('\u{c}'),
        'v' => EscapeAtom::Char('\u{b}'),
        '0' if !rest.get(1).is_some_and(char::is_ascii_digit) => EscapeAtom::Char('\0'),
        'x' | 'u' => {
            let width = if c == 'x' { 2 } else { 4 };
            let hex: String = rest.iter().skip(1).take(width).collect();
            if hex.len() != width || !hex.chars().all(|h| h.is_ascii_hexdigit()) {
                bail!("malformed \\{c} escape");
            }
            let code = u32::from_str_radix(&hex, 16).expect("hex digits");
            let ch = char::from_u32(code).ok_or_else(|| {
                anyhow!("\\{c}{hex} is not a character (surrogate pairs are not supported)")
            })?;
            return Ok((EscapeAtom::Char(ch), 1 + width));
        }
        c if c.is_ascii_digit() => bail!("back-references are not supported"),
        c if c.is_ascii_alphabetic() => bail!("unsupported escape \\{c}"),
        c => EscapeAtom::Char(c),
    };
    Ok((atom, 1))
}

/// Translates the class starting at `chars[start] == '['`; returns the index after its `]`.
fn translate_class(chars: &[char], start: usize, out: &mut String) -> anyhow::Result<usize> {
    let mut i = start + 1;
    out.push('[');
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    if chars.get(i) == Some(&']') {
        bail!("empty character classes ([] and [^]) are not supported");
    }
    // Whether the previous item was a single character that a following `-x` would make a range.
    let mut range_start_allowed = false;
    loop {
        let Some(&c) = chars.get(i) else {
            bail!("unterminated character class");
        };
        match c {
            ']' => {
                out.push(']');
                return Ok(i + 1);
            }
            '-' if range_start_allowed && chars.get(i + 1).is_some_and(|&n| n != ']') => {
                // `a-z`: translate the range end and emit it.
                let (end, used) = if chars[i + 1] == '\\' {
                    let (atom, used) = translate_escape(&chars[i + 2..], true)?;
                    (atom, used + 1)
                } else {
                    (EscapeAtom::Char(chars[i + 1]), 1)
                };
                match end {
                    EscapeAtom::Char(end) => {
                        out.push('-');
                        out.push_str(&escape_char(end));
                    }
                    // ECMAScript (Annex B) reads `a-\d` as a, -, digits.
                    EscapeAtom::Class { inside, .. } => {
                        out.push_str("\\-");
                        out.push_str(&inside);
                    }
                    EscapeAtom::Assertion(_) => unreachable!("no assertions inside a class"),
                }
                i += 1 + used;
                range_start_allowed = false;
            }
            '\\' => {
                let (atom, used) = translate_escape(&chars[i + 1..], true)?;
                match atom {
                    EscapeAtom::Char(c) => {
                        out.push_str(&escape_char(c));
                        range_start_allowed = true;
                    }
                    EscapeAtom::Class { inside, .. } => {
                        out.push_str(&inside);
                        range_start_allowed = false;
                    }
                    EscapeAtom::Assertion(_) => unreachable!("no assertions inside a class"),
                }
                i += 1 + used;
            }
            _ => {
                out.push_str(&escape_char(c));
                range_start_allowed = c != '-';
                i += 1;
            }
        }
    }
}

impl SwaggerSpec {
    /// Load a swagger file and every file its $refs reach.
    pub fn load(path: &Path) -> anyhow::Result<SwaggerSpec> {
        let mut compiler = Compiler::default();
        let main = compiler.load_file(path)?;
        let api_version = compiler.files[main]
            .json
            .pointer("/info/version")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{} has no info.version", path.display()))?
            .to_owned();

        // Compile every definition of every loaded file, so that subtypes are known wherever
        // they are declared and every pattern is checked now rather than on first use.
        let mut definitions = BTreeMap::new();
        let mut file = 0;
        while file < compiler.files.len() {
            let names: Vec<String> = compiler.files[file]
                .json
                .get("definitions")
                .and_then(Value::as_object)
                .map(|defs| defs.keys().cloned().collect())
                .unwrap_or_default();
            for name in names {
                let pointer = format!(
                    "#/definitions/{}",
                    name.replace('~', "~0").replace('/', "~1")
                );
                let id = compiler.compile_ref(file, &pointer)?;
                if file == main {
                    definitions.insert(name, id);
                }
            }
            file += 1;
        }

        let operations = compile_operations(&mut compiler, main)?;
        let nodes = compiler.nodes;
        let views = build_views(&nodes)?;
        let subtypes = build_subtypes(&nodes, &views)?;
        Ok(SwaggerSpec {
            api_version,
            nodes,
            views,
            subtypes,
            definitions,
            operations,
        })
    }

    /// The api-version in info.version, e.g. "2024-02-01".
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// Validate a request body as the body parameter of operation (`method`, path template)
    /// would be validated, e.g.
    /// `("PUT", "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.VirtualMachineImages/imageTemplates/{imageTemplateName}")`.
    /// The path template is matched case-insensitively and regardless of parameter names. PATCH bodies are checked against `x-ms-mutability` "update", every other
    /// method against "create". An operation without a body parameter accepts any body (ARM
    /// ignores it); a missing required body is passed as `Value::Null`.
    pub fn validate_request_body(
        &self,
        method: &str,
        path_template: &str,
        body: &Value,
    ) -> Result<(), Vec<ValidationIssue>> {
        let key = (
            method.to_ascii_uppercase(),
            normalize_path_template(path_template),
        );
        let Some(operation) = self.operations.get(&key) else {
            return Err(vec![ValidationIssue::new(
                "",
                ValidationCode::UnknownOperation,
                format!(
                    "the API spec {} has no operation {method} {path_template}",
                    self.api_version
                ),
            )]);
        };
        let Some(parameter) = &operation.body else {
            return Ok(());
        };
        if body.is_null() {
            return if parameter.required {
                Err(vec![ValidationIssue::new(
                    &parameter.name,
                    ValidationCode::RequiredPropertyMissing,
                    "the request body is required",
                )])
            } else {
                Ok(())
            };
        }
        let intent = if key.0 == "PATCH" {
            Intent::Update
        } else {
            Intent::Create
        };
        self.run(parameter.schema, body, intent)
    }

    /// Validate against a named definition, e.g. "ImageTemplate", as a create (PUT) body.
    pub fn validate_definition(
        &self,
        definition: &str,
        value: &Value,
    ) -> Result<(), Vec<ValidationIssue>> {
        match self.definitions.get(definition) {
            Some(&id) => self.run(id, value, Intent::Create),
            None => Err(vec![ValidationIssue::new(
                "",
                ValidationCode::UnknownDefinition,
                format!(
                    "the API spec {} has no definition {definition}",
                    self.api_version
                ),
            )]),
        }
    }

    /// Default location of the Image Builder spec for `api_version`: under [`specs_root`].
    /// `stable` is preferred over `preview`. None when the file is absent.
    pub fn default_image_builder_path(api_version: &str) -> Option<PathBuf> {
        let service = specs_root().join(
            "specification/imagebuilder/resource-manager/Microsoft.VirtualMachineImages/ImageBuilder",
        );
        ["stable", "preview"]
            .iter()
            .map(|stage| {
                service
                    .join(stage)
                    .join(api_version)
                    .join("imagebuilder.json")
            })
            .find(|path| path.is_file())
    }

    fn run(
        &self,
        schema: NodeId,
        value: &Value,
        intent: Intent,
    ) -> Result<(), Vec<ValidationIssue>> {
        let mut validator = Validator {
            spec: self,
            intent,
            issues: Vec::new(),
        };
        validator.check(schema, value, "");
        if validator.issues.is_empty() {
            Ok(())
        } else {
            Err(validator.issues)
        }
    }

    /// Follows `$ref` nodes to the schema that holds the keywords, collecting their flags.
    fn resolve(&self, mut id: NodeId) -> (NodeId, RefFlags<'_>) {
        let mut flags = RefFlags::default();
        loop {
            let node = &self.nodes[id];
            flags.read_only |= node.read_only;
            flags.nullable = flags.nullable.or(node.nullable);
            if flags.mutability.is_none() {
                flags.mutability = node.mutability.as_deref();
            }
            match node.reference {
                Some(target) => id = target,
                None => return (id, flags),
            }
        }
    }

    fn display_name(&self, id: NodeId) -> &str {
        self.nodes[id].name.as_deref().unwrap_or("object")
    }
}

fn compile_operations(
    compiler: &mut Compiler,
    main: usize,
) -> anyhow::Result<BTreeMap<(String, String), Operation>> {
    let paths = compiler.files[main]
        .json
        .get("paths")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut operations = BTreeMap::new();
    for (template, item) in &paths {
        let shared = item
            .get("parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for method in HTTP_METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let own = operation
                .get("parameters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut body = None;
            for parameter in shared.iter().chain(&own) {
                let (file, parameter) = compiler
                    .parameter(main, parameter)
                    .with_context(|| format!("parameters of {method} {template}"))?;
                if parameter.get("in").and_then(Value::as_str) != Some("body") {
                    continue;
                }
                let schema = parameter.get("schema").ok_or_else(|| {
                    anyhow!("body parameter of {method} {template} has no schema")
                })?;
                let at = format!("/paths/{template}/{method}/body");
                body = Some(BodyParameter {
                    name: parameter
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("body")
                        .to_owned(),
                    required: parameter
                        .get("required")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    schema: compiler.compile_inline(file, schema, &at)?,
                });
            }
            let key = (
                method.to_ascii_uppercase(),
                normalize_path_template(template),
            );
            operations.insert(key, Operation { body });
        }
    }
    Ok(operations)
}

/// Follows pure `$ref` nodes (no flags) to the node with the keywords.
fn deref(nodes: &[Node], mut id: NodeId) -> NodeId {
    while let Some(target) = nodes[id].reference {
        id = target;
    }
    id
}

/// Merges each node's `allOf` parents into an [`ObjectView`].
fn build_views(nodes: &[Node]) -> anyhow::Result<Vec<ObjectView>> {
    fn view(
        nodes: &[Node],
        id: NodeId,
        memo: &mut Vec<Option<ObjectView>>,
        visiting: &mut BTreeSet<NodeId>,
    ) -> anyhow::Result<ObjectView> {
        let id = deref(nodes, id);
        if let Some(done) = &memo[id] {
            return Ok(done.clone());
        }
        if !visiting.insert(id) {
            bail!(
                "allOf cycle through {}",
                nodes[id].name.as_deref().unwrap_or("an inline schema")
            );
        }
        let node = &nodes[id];
        let mut merged = ObjectView::default();
        for &part in &node.all_of {
            let parent = view(nodes, part, memo, visiting)?;
            merged.ty = merged.ty.or(parent.ty);
            merged.properties.extend(parent.properties);
            merged.required.extend(parent.required);
            merged.additional = merged.additional.or(parent.additional);
            merged.discriminator = merged.discriminator.or(parent.discriminator);
        }
        merged.ty = node.ty.or(merged.ty);
        merged.properties.extend(node.properties.clone());
        merged.required.extend(node.required.iter().cloned());
        merged.additional = node.additional.clone().or(merged.additional);
        merged.discriminator = node.discriminator.clone().or(merged.discriminator);
        visiting.remove(&id);
        memo[id] = Some(merged.clone());
        Ok(merged)
    }
    let mut memo = vec![None; nodes.len()];
    for id in 0..nodes.len() {
        view(nodes, id, &mut memo, &mut BTreeSet::new())?;
    }
    Ok(memo.into_iter().map(Option::unwrap_or_default).collect())
}

/// Indexes discriminated subtypes: every named definition below a `discriminator` is reachable
/// from each of its ancestors (and itself) by its `x-ms-discriminator-value`, or by its name when
/// that is absent. The root of a hierarchy only gets a value when it declares one.
fn build_subtypes(
    nodes: &[Node],
    views: &[ObjectView],
) -> anyhow::Result<Vec<BTreeMap<String, NodeId>>> {
    fn ancestors(nodes: &[Node], id: NodeId, out: &mut BTreeSet<NodeId>) {
        for &part in &nodes[id].all_of {
            let part = deref(nodes, part);
            if out.insert(part) {
                ancestors(nodes, part, out);
            }
        }
    }
    let mut subtypes = vec![BTreeMap::new(); nodes.len()];
    for (id, node) in nodes.iter().enumerate() {
        let (Some(name), None) = (&node.name, node.reference) else {
            continue;
        };
        if views[id].discriminator.is_none() {
            continue;
        }
        let value = match (&node.discriminator_value, &node.discriminator) {
            (Some(value), _) => value.clone(),
            (None, Some(_)) => continue,
            (None, None) => name.clone(),
        };
        let mut lineage = BTreeSet::from([id]);
        ancestors(nodes, id, &mut lineage);
        for ancestor in lineage {
            if views[ancestor].discriminator.is_none() {
                continue;
            }
            if let Some(other) = subtypes[ancestor].insert(value.clone(), id)
                && other != id
            {
                bail!(
                    "discriminator value {value:?} is used by both {} and {name}",
                    nodes[other].name.as_deref().unwrap_or("?")
                );
            }
        }
    }
    Ok(subtypes)
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Which `x-ms-mutability` a request body property needs.
#[derive(Debug, Clone, Copy)]
enum Intent {
    Create,
    Update,
}

impl Intent {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
        }
    }
}

struct Validator<'a> {
    spec: &'a SwaggerSpec,
    intent: Intent,
    issues: Vec<ValidationIssue>,
}

impl Validator<'_> {
    fn report(&mut self, path: &str, code: ValidationCode, message: impl Into<String>) {
        self.issues.push(ValidationIssue::new(path, code, message));
    }

    fn check(&mut self, id: NodeId, value: &Value, path: &str) {
        let spec = self.spec;
        let (id, flags) = spec.resolve(id);
        if value.is_null() {
            if flags.nullable != Some(true) {
                let expected = spec.views[id].ty.map_or("a value", JsonType::name);
                self.report(
                    path,
                    ValidationCode::InvalidType,
                    format!("null is not allowed here; expected {expected}"),
                );
            }
            return;
        }
        let Some(id) = self.concrete_type(id, value, path) else {
            return;
        };
        let node = &spec.nodes[id];
        let view = &spec.views[id];
        let ty = view.ty.or_else(|| {
            (!view.properties.is_empty() || view.additional.is_some()).then_some(JsonType::Object)
        });
        if let Some(ty) = ty
            && !ty.matches(value)
        {
            self.report(
                path,
                ValidationCode::InvalidType,
                format!("expected {}, got {}", ty.name(), kind_of(value)),
            );
            return;
        }
        self.check_enum(node, value, path);
        match value {
            Value::Object(map) => self.check_object(id, map, path),
            Value::Array(items) => self.check_array(node, items, path),
            Value::String(s) => self.check_string(node, s, path),
            Value::Number(n) => self.check_number(node, n, path),
            Value::Bool(_) | Value::Null => {}
        }
    }

    /// For a discriminated base, the subtype the value names; `None` (after reporting) when the
    /// discriminator is missing or unknown, since the object's shape is then unknown too.
    fn concrete_type(&mut self, id: NodeId, value: &Value, path: &str) -> Option<NodeId> {
        let spec = self.spec;
        let subtypes = &spec.subtypes[id];
        let (Some(property), Some(object)) = (&spec.views[id].discriminator, value.as_object())
        else {
            return Some(id);
        };
        if subtypes.is_empty() {
            return Some(id);
        }
        let target = child_path(path, property);
        let allowed = || {
            subtypes
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match object.get(property) {
            None => {
                self.report(
                    &target,
                    ValidationCode::RequiredPropertyMissing,
                    format!(
                        "'{property}' is required to tell which kind of {} this is; expected one of: {}",
                        spec.display_name(id),
                        allowed()
                    ),
                );
                None
            }
            Some(Value::String(name)) => match subtypes.get(name) {
                Some(&concrete) => Some(concrete),
                None => {
                    self.report(
                        &target,
                        ValidationCode::InvalidDiscriminator,
                        format!(
                            "'{name}' is not a known {property} of {}; expected one of: {}",
                            spec.display_name(id),
                            allowed()
                        ),
                    );
                    None
                }
            },
            Some(other) => {
                self.report(
                    &target,
                    ValidationCode::InvalidType,
                    format!("expected string, got {}", kind_of(other)),
                );
                None
            }
        }
    }

    fn check_object(&mut self, id: NodeId, object: &Map<String, Value>, path: &str) {
        let spec = self.spec;
        let view = &spec.views[id];
        let intent = self.intent.as_str();
        let settable = |flags: &RefFlags| {
            !flags.read_only
                && flags
                    .mutability
                    .is_none_or(|m| m.iter().any(|x| x.eq_ignore_ascii_case(intent)))
        };
        for name in &view.required {
            if object.contains_key(name) {
                continue;
            }
            // A required property the client may not send is the server's to fill in.
            let settable_here = view
                .properties
                .get(name)
                .is_none_or(|&property| settable(&spec.resolve(property).1));
            if settable_here {
                self.report(
                    &child_path(path, name),
                    ValidationCode::RequiredPropertyMissing,
                    format!("'{name}' is required in {}", spec.display_name(id)),
                );
            }
        }
        // Sorted, so the order of issues does not depend on serde_json's map flavour.
        let mut entries: Vec<(&String, &Value)> = object.iter().collect();
        entries.sort_unstable_by_key(|&(name, _)| name);
        for (name, value) in entries {
            let target = child_path(path, name);
            if let Some(&property) = view.properties.get(name) {
                let flags = spec.resolve(property).1;
                if flags.read_only {
                    self.report(
                        &target,
                        ValidationCode::ReadOnlyProperty,
                        format!("'{name}' is read-only and cannot be set in a request"),
                    );
                } else if !settable(&flags) {
                    self.report(
                        &target,
                        ValidationCode::ReadOnlyProperty,
                        format!("'{name}' cannot be set on {intent}"),
                    );
                } else {
                    self.check(property, value, &target);
                }
                continue;
            }
            match &view.additional {
                Some(Additional::Schema(extra)) => self.check(*extra, value, &target),
                Some(Additional::Any) => {}
                // No properties and no additionalProperties: a free-form object.
                None if view.properties.is_empty() => {}
                Some(Additional::Forbidden) | None => {
                    let hint = view
                        .properties
                        .keys()
                        .find(|known| known.eq_ignore_ascii_case(name))
                        .map(|known| format!(" (property names are case-sensitive: '{known}')"))
                        .unwrap_or_default();
                    self.report(
                        &target,
                        ValidationCode::UnknownProperty,
                        format!(
                            "'{name}' is not a property of {}{hint}",
                            spec.display_name(id)
                        ),
                    );
                }
            }
        }
    }

    fn check_array(&mut self, node: &Node, items: &[Value], path: &str) {
        let count = items.len() as u64;
        if let Some(min) = node.min_items.filter(|&min| count < min) {
            self.report(
                path,
                ValidationCode::TooFewItems,
                format!("{count} items, at least {min} required"),
            );
        }
        if let Some(max) = node.max_items.filter(|&max| count > max) {
            self.report(
                path,
                ValidationCode::TooManyItems,
                format!("{count} items, at most {max} allowed"),
            );
        }
        if node.unique_items {
            for (j, item) in items.iter().enumerate() {
                if let Some(i) = items[..j].iter().position(|earlier| earlier == item) {
                    self.report(
                        &format!("{path}[{j}]"),
                        ValidationCode::DuplicateItems,
                        format!("items must be unique; this one equals item [{i}]"),
                    );
                }
            }
        }
        if let Some(schema) = node.items {
            for (i, item) in items.iter().enumerate() {
                self.check(schema, item, &format!("{path}[{i}]"));
            }
        }
    }

    fn check_string(&mut self, node: &Node, s: &str, path: &str) {
        let length = s.chars().count() as u64;
        if let Some(min) = node.min_length.filter(|&min| length < min) {
            self.report(
                path,
                ValidationCode::TooShort,
                format!("{length} characters, at least {min} required"),
            );
        }
        if let Some(max) = node.max_length.filter(|&max| length > max) {
            self.report(
                path,
                ValidationCode::TooLong,
                format!("{length} characters, at most {max} allowed"),
            );
        }
        if let Some(pattern) = &node.pattern
            && !pattern.regex.is_match(s)
        {
            self.report(
                path,
                ValidationCode::PatternMismatch,
                format!("'{s}' does not match the pattern {}", pattern.source),
            );
        }
        if let Some(format) = node.format.as_deref()
            && !string_matches_format(format, s)
        {
            self.report(
                path,
                ValidationCode::InvalidFormat,
                format!("'{s}' is not a valid {format}"),
            );
        }
    }

    fn check_number(&mut self, node: &Node, n: &Number, path: &str) {
        let range = match node.format.as_deref() {
            Some("int32") => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
            Some("int64") => Some((i64::MIN, i64::MAX)),
            _ => None,
        };
        if let Some((low, high)) = range {
            let fits = n.as_i64().is_some_and(|v| (low..=high).contains(&v));
            if !fits && (n.is_i64() || n.is_u64()) {
                self.report(
                    path,
                    ValidationCode::OutOfRange,
                    format!(
                        "{n} does not fit in {}",
                        node.format.as_deref().unwrap_or("")
                    ),
                );
            }
        }
        let Some(v) = n.as_f64() else {
            return;
        };
        if let Some(min) = node.minimum
            && (v < min.value || (min.exclusive && v == min.value))
        {
            let relation = if min.exclusive {
                "greater than"
            } else {
                "at least"
            };
            self.report(
                path,
                ValidationCode::OutOfRange,
                format!(
                    "{n} is too small; must be {relation} {}",
                    format_bound(min.value)
                ),
            );
        }
        if let Some(max) = node.maximum
            && (v > max.value || (max.exclusive && v == max.value))
        {
            let relation = if max.exclusive {
                "less than"
            } else {
                "at most"
            };
            self.report(
                path,
                ValidationCode::OutOfRange,
                format!(
                    "{n} is too large; must be {relation} {}",
                    format_bound(max.value)
                ),
            );
        }
    }

    fn check_enum(&mut self, node: &Node, value: &Value, path: &str) {
        let Some(enumeration) = &node.enumeration else {
            return;
        };
        if enumeration.values.contains(value) {
            return;
        }
        // modelAsString: the listed values are examples of an open set; any string goes.
        if enumeration.open && value.is_string() {
            return;
        }
        let listed = enumeration
            .values
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>();
        let shown = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        let hint = listed
            .iter()
            .find(|known| known.eq_ignore_ascii_case(&shown))
            .map(|known| format!(" (values are case-sensitive: '{known}')"))
            .unwrap_or_default();
        self.report(
            path,
            ValidationCode::InvalidEnumValue,
            format!(
                "'{shown}' is not one of the allowed values: {}{hint}",
                listed.join(", ")
            ),
        );
    }
}

fn format_bound(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        value.to_string()
    }
}

static DATE_TIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?)?$")
        .expect("valid regex")
});
static DATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d{4}-\d{2}-\d{2}$").expect("valid regex"));
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
        .expect("valid regex")
});

/// Loose checks for the string formats the ARM specs use; unknown formats always pass.
fn string_matches_format(format: &str, s: &str) -> bool {
    match format {
        "date-time" => DATE_TIME.is_match(s),
        "date" => DATE.is_match(s),
        "uuid" => UUID.is_match(s),
        "uri" | "url" => url::Url::parse(s).is_ok(),
        "arm-id" => s.starts_with('/'),
        _ => true,
    }
}

/// `parent.name`, or `parent['odd name']` when `name` is not a plain identifier (map keys such
/// as resource ids).
fn child_path(parent: &str, name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '-');
    match (plain, parent.is_empty()) {
        (true, true) => name.to_owned(),
        (true, false) => format!("{parent}.{name}"),
        (false, _) => format!(
            "{parent}['{}']",
            name.replace('\\', "\\\\").replace('\'', "\\'")
        ),
    }
}

/// The folder holding the public specs (the one that contains `specification/` and
/// `azure-pipelines-task-lib/`): `AIB_SPECS_DIR` if set, else `<workspace root>/../shared/specs`.
pub fn specs_root() -> PathBuf {
    match std::env::var_os("AIB_SPECS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/specs"),
    }
}

/// Whether a run must fail, rather than skip, when a spec is missing: in CI (`CI` set to
/// anything but `false` or `0`), where a missing spec means a test silently checked nothing.
pub fn specs_required(ci: Option<&str>) -> bool {
    ci.is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// For a test that needs a spec which is absent: panics in CI, else says it skips.
pub fn missing_spec(what: &str) {
    if specs_required(std::env::var("CI").ok().as_deref()) {
        panic!(
            "{what} is absent, and CI is set: tests that need ../shared/specs must not skip in CI (put the specs beside the repository, or set AIB_SPECS_DIR)"
        );
    }
    eprintln!("SKIPPED: {what} is absent (set AIB_SPECS_DIR to the folder holding the specs)");
}

#[cfg(test)]
mod tests {
    #[test]
    fn ci_turns_a_missing_spec_into_a_failure() {
        for ci in ["true", "1", "yes", "True"] {
            assert!(super::specs_required(Some(ci)), "{ci}");
        }
        for ci in [None, Some(""), Some("false"), Some("FALSE"), Some("0")] {
            assert!(!super::specs_required(ci), "{ci:?}");
        }
    }

    use super::*;
    use serde_json::json;

    fn translated(pattern: &str) -> String {
        translate_ecma_pattern(pattern).unwrap()
    }

    fn ecma_match(pattern: &str, s: &str) -> bool {
        Regex::new(&translated(pattern)).unwrap().is_match(s)
    }

    #[test]
    fn patterns_from_the_specs_translate() {
        // Image Builder names: `-` after a range is a literal in ECMAScript.
        assert_eq!(
            translated("^[A-Za-z0-9-_.]{1,64}$"),
            r"^[A-Za-z0-9\-_\.]{1,64}$"
        );
        assert!(ecma_match("^[A-Za-z0-9-_.]{1,64}$", "a-b_c.d"));
        assert!(!ecma_match("^[A-Za-z0-9-_.]{1,64}$", "a b"));
        assert!(!ecma_match("^[A-Za-z0-9-_.]{1,64}$", "a,b"));
        // Common types: resource group names, with \w and escaped punctuation in a class.
        let rg = r"^[-\w\._\(\)]+$";
        assert_eq!(translated(rg), r"^[\-[:word:]\._\(\)]+$");
        assert!(ecma_match(rg, "my-rg_(1).x"));
        // ECMAScript's \w is ASCII only.
        assert!(!ecma_match(rg, "rg-é"));
        assert!(!ecma_match(r"^\d+$", "٣"));
    }

    #[test]
    fn pattern_translation_handles_ecmascript_corners() {
        assert!(ecma_match(r"^a{2}$", "aa"));
        assert!(ecma_match(r"^a{$", "a{"));
        assert!(ecma_match(r"^}$", "}"));
        assert!(ecma_match(r"^\u0041\x42$", "AB"));
        assert!(ecma_match(r"^[\u0041-\u0043]+$", "ABC"));
        assert!(ecma_match(r"^[a\-z]+$", "a-z"));
        assert!(!ecma_match(r"^[a\-z]+$", "b"));
        assert!(ecma_match(r"^[a-]+$", "a-"));
        assert!(ecma_match(r"^[^\d\s]+$", "ab"));
        assert!(!ecma_match(r"^[^\d\s]+$", "a1"));
        assert!(ecma_match(r"^(?:ab)+\/\#&~$", "abab/#&~"));
        assert!(ecma_match(r"^(?<word>[a-z]+)\b", "abc def"));
    }

    #[test]
    fn untranslatable_patterns_are_errors() {
        for pattern in [
            r"^(?=a)", r"^(?!a)", r"(?<=a)b", r"(a)\1", r"[]", r"\q", "abc\\", "[a-z",
        ] {
            assert!(translate_ecma_pattern(pattern).is_err(), "{pattern}");
        }
    }

    #[test]
    fn spec_can_be_shared_between_request_handlers() {
        fn shareable<T: Send + Sync + Clone>() {}
        shareable::<SwaggerSpec>();
    }

    #[test]
    fn child_paths_quote_odd_keys() {
        assert_eq!(child_path("", "identity"), "identity");
        assert_eq!(
            child_path("properties", "vmProfile"),
            "properties.vmProfile"
        );
        assert_eq!(child_path("tags", "a b"), "tags['a b']");
        assert_eq!(child_path("m", "/x/it's"), r"m['/x/it\'s']");
    }

    /// Writes a two-file spec (main + a common file it refers to) under a fresh temp folder.
    fn synthetic_spec(definitions: Value) -> anyhow::Result<SwaggerSpec> {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("aib-swagger-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(dir.join("api/v1"))?;
        std::fs::create_dir_all(dir.join("common"))?;
        let common = json!({
            "swagger": "2.0",
            "info": {"version": "common", "title": "common"},
            "paths": {},
            "definitions": {
                "Resource": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "readOnly": true},
                        "location": {"type": "string", "x-ms-mutability": ["read", "create"]},
                        "etag": {"type": "string", "x-nullable": true}
                    }
                }
            }
        });
        let main = json!({
            "swagger": "2.0",
            "info": {"version": "2030-01-01", "title": "test"},
            "paths": {
                "/things/{name}": {
                    "put": {
                        "parameters": [{"$ref": "#/parameters/Body"}],
                        "responses": {},
                        "x-ms-examples": {"missing": {"$ref": "./examples/none.json"}}
                    },
                    "patch": {
                        "parameters": [{"name": "body", "in": "body", "required": true, "schema": {"$ref": "#/definitions/Thing"}}],
                        "responses": {}
                    }
                }
            },
            "parameters": {
                "Body": {"name": "thing", "in": "body", "required": true, "schema": {"$ref": "#/definitions/Thing"}}
            },
            "definitions": definitions
        });
        std::fs::write(dir.join("common/types.json"), common.to_string())?;
        let path = dir.join("api/v1/spec.json");
        std::fs::write(&path, main.to_string())?;
        let spec = SwaggerSpec::load(&path);
        std::fs::remove_dir_all(&dir)?;
        spec
    }

    fn thing_spec() -> SwaggerSpec {
        synthetic_spec(json!({
            "Thing": {
                "type": "object",
                "allOf": [{"$ref": "../../common/types.json#/definitions/Resource"}],
                "properties": {
                    "count": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 10, "exclusiveMaximum": true},
                    "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": true},
                    "label": {"type": "string", "minLength": 2, "maxLength": 4},
                    "when": {"type": "string", "format": "date-time"},
                    "uid": {"type": "string", "format": "uuid"},
                    "link": {"type": "string", "format": "uri"},
                    "list": {"type": "array", "minItems": 1, "maxItems": 3, "uniqueItems": true, "items": {"type": "string"}},
                    "closed": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false},
                    "open": {"type": "object", "additionalProperties": true, "properties": {"a": {"type": "string"}}},
                    "anything": {"type": "object"},
                    "maybe": {"type": "string", "x-nullable": true},
                    "state": {"$ref": "#/definitions/State", "readOnly": true},
                    "createOnly": {"type": "string", "x-ms-mutability": ["read", "create"]},
                    "animal": {"$ref": "#/definitions/Animal"}
                },
                "required": ["animal"]
            },
            "State": {"type": "string", "enum": ["A", "B"]},
            "Animal": {
                "type": "object",
                "discriminator": "kind",
                "properties": {"kind": {"type": "string"}, "name": {"type": "string"}},
                "required": ["kind"]
            },
            "Dog": {
                "type": "object",
                "allOf": [{"$ref": "#/definitions/Animal"}],
                "properties": {"barks": {"type": "boolean"}}
            },
            "Puppy": {
                "type": "object",
                "x-ms-discriminator-value": "puppy",
                "allOf": [{"$ref": "#/definitions/Dog"}],
                "properties": {"ageWeeks": {"type": "integer", "format": "int32"}},
                "required": ["ageWeeks"]
            }
        }))
        .unwrap()
    }

    fn codes(result: Result<(), Vec<ValidationIssue>>) -> Vec<(ValidationCode, String)> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|issue| (issue.code, issue.path))
            .collect()
    }

    fn put(spec: &SwaggerSpec, body: Value) -> Vec<(ValidationCode, String)> {
        codes(spec.validate_request_body("PUT", "/things/{thingName}", &body))
    }

    fn one(code: ValidationCode, path: &str) -> Vec<(ValidationCode, String)> {
        vec![(code, path.to_owned())]
    }

    #[test]
    fn synthetic_valid_body_passes_and_refs_cross_files() {
        let spec = thing_spec();
        assert_eq!(spec.api_version(), "2030-01-01");
        let body = json!({
            "location": "here",
            "etag": null,
            "count": 9,
            "ratio": 0.5,
            "label": "abc",
            "when": "2026-11-27T05:00:00Z",
            "uid": "0f8fad5b-d9cb-469f-a165-70867728950e",
            "link": "https://example.com/x?y=z",
            "list": ["a", "b"],
            "closed": {"a": "x"},
            "open": {"a": "x", "b": [1]},
            "anything": {"x": {"y": 1}},
            "maybe": null,
            "createOnly": "x",
            "animal": {"kind": "Dog", "name": "Rex", "barks": true}
        });
        assert_eq!(put(&spec, body), vec![]);
    }

    #[test]
    fn synthetic_scalar_constraints() {
        let spec = thing_spec();
        let animal = json!({"kind": "Dog"});
        let cases = [
            (json!({"count": 10}), ValidationCode::OutOfRange, "count"),
            (json!({"count": -1}), ValidationCode::OutOfRange, "count"),
            (json!({"count": 1.0}), ValidationCode::InvalidType, "count"),
            (json!({"ratio": 0}), ValidationCode::OutOfRange, "ratio"),
            (json!({"label": "a"}), ValidationCode::TooShort, "label"),
            (json!({"label": "abcde"}), ValidationCode::TooLong, "label"),
            (
                json!({"when": "yesterday"}),
                ValidationCode::InvalidFormat,
                "when",
            ),
            (
                json!({"uid": "not-a-uuid"}),
                ValidationCode::InvalidFormat,
                "uid",
            ),
            (
                json!({"link": "no scheme"}),
                ValidationCode::InvalidFormat,
                "link",
            ),
            (json!({"list": []}), ValidationCode::TooFewItems, "list"),
            (
                json!({"list": ["a", "b", "c", "d"]}),
                ValidationCode::TooManyItems,
                "list",
            ),
            (
                json!({"list": ["a", "b", "a"]}),
                ValidationCode::DuplicateItems,
                "list[2]",
            ),
            (json!({"list": "a"}), ValidationCode::InvalidType, "list"),
            (
                json!({"closed": {"b": "x"}}),
                ValidationCode::UnknownProperty,
                "closed.b",
            ),
            (json!({"label": null}), ValidationCode::InvalidType, "label"),
            (
                json!({"state": "A"}),
                ValidationCode::ReadOnlyProperty,
                "state",
            ),
            (json!({"id": "x"}), ValidationCode::ReadOnlyProperty, "id"),
        ];
        for (mut body, code, path) in cases {
            body["animal"] = animal.clone();
            assert_eq!(put(&spec, body.clone()), one(code, path), "{body}");
        }
    }

    #[test]
    fn synthetic_mutability_depends_on_the_method() {
        let spec = thing_spec();
        let body = json!({"createOnly": "x", "location": "here", "animal": {"kind": "Dog"}});
        assert_eq!(put(&spec, body.clone()), vec![]);
        let patched = codes(spec.validate_request_body("PATCH", "/things/{name}", &body));
        assert_eq!(
            patched,
            vec![
                (ValidationCode::ReadOnlyProperty, "createOnly".to_owned()),
                (ValidationCode::ReadOnlyProperty, "location".to_owned()),
            ]
        );
    }

    #[test]
    fn synthetic_polymorphism_is_multi_level() {
        let spec = thing_spec();
        // Dog has no x-ms-discriminator-value: its definition name is its value.
        assert_eq!(
            put(&spec, json!({"animal": {"kind": "Dog", "barks": true}})),
            vec![]
        );
        assert_eq!(
            put(
                &spec,
                json!({"animal": {"kind": "puppy", "barks": true, "ageWeeks": 8}})
            ),
            vec![]
        );
        assert_eq!(
            put(&spec, json!({"animal": {"kind": "puppy"}})),
            one(ValidationCode::RequiredPropertyMissing, "animal.ageWeeks")
        );
        assert_eq!(
            put(&spec, json!({"animal": {"kind": "Dog", "ageWeeks": 8}})),
            one(ValidationCode::UnknownProperty, "animal.ageWeeks")
        );
        // The base is abstract.
        assert_eq!(
            put(&spec, json!({"animal": {"kind": "Animal"}})),
            one(ValidationCode::InvalidDiscriminator, "animal.kind")
        );
        assert_eq!(
            put(&spec, json!({"animal": {"kind": 3}})),
            one(ValidationCode::InvalidType, "animal.kind")
        );
        assert_eq!(
            put(&spec, json!({})),
            one(ValidationCode::RequiredPropertyMissing, "animal")
        );
        // Reached directly, a subtype allows itself and its descendants only.
        let issues = spec
            .validate_definition("Dog", &json!({"kind": "puppy", "ageWeeks": 1}))
            .map_err(|issues| issues.len());
        assert_eq!(issues, Ok(()));
        let issues = codes(spec.validate_definition("Puppy", &json!({"kind": "Dog"})));
        assert_eq!(issues, one(ValidationCode::InvalidDiscriminator, "kind"));
    }

    #[test]
    fn synthetic_bad_pattern_fails_the_load() {
        let error = synthetic_spec(json!({
            "Thing": {"type": "object", "properties": {"x": {"type": "string", "pattern": "^(?!bad)"}}}
        }))
        .unwrap_err();
        assert!(format!("{error:#}").contains("look-around"), "{error:#}");
        let error = synthetic_spec(json!({
            "Thing": {"type": "object", "properties": {"x": {"$ref": "../../common/types.json#/definitions/Nope"}}}
        }))
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("points at nothing"),
            "{error:#}"
        );
    }
}
