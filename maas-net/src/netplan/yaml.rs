//! Building and writing YAML documents with keys in the order they are added.

use std::net::IpAddr;

use ipnet::IpNet;
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter};

/// A mapping that keeps its keys in insertion order.
#[derive(Default)]
pub(super) struct Map(Hash);

impl Map {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// Adds `key: value`.
    pub(super) fn put(&mut self, key: &str, value: impl Into<Node>) -> &mut Self {
        self.0.insert(Yaml::String(key.to_owned()), value.into().0);
        self
    }

    /// Adds `key: value` when there is a value.
    pub(super) fn put_some<T: Into<Node>>(&mut self, key: &str, value: Option<T>) -> &mut Self {
        if let Some(value) = value {
            self.put(key, value);
        }
        self
    }

    /// Adds `key: [items]` unless there are none.
    pub(super) fn put_list<T: Into<Node>>(
        &mut self,
        key: &str,
        items: impl IntoIterator<Item = T>,
    ) -> &mut Self {
        let items: Vec<Yaml> = items.into_iter().map(|i| i.into().0).collect();
        if !items.is_empty() {
            self.put(key, Node(Yaml::Array(items)));
        }
        self
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A YAML value.
pub(super) struct Node(Yaml);

impl Node {
    /// A list, even an empty one.
    pub(super) fn list<T: Into<Self>>(items: impl IntoIterator<Item = T>) -> Self {
        Self(Yaml::Array(items.into_iter().map(|i| i.into().0).collect()))
    }
}

impl From<Map> for Node {
    fn from(map: Map) -> Self {
        Self(Yaml::Hash(map.0))
    }
}

impl From<&str> for Node {
    fn from(s: &str) -> Self {
        Self(Yaml::String(s.to_owned()))
    }
}

impl From<String> for Node {
    fn from(s: String) -> Self {
        Self(Yaml::String(s))
    }
}

impl From<&String> for Node {
    fn from(s: &String) -> Self {
        Self(Yaml::String(s.clone()))
    }
}

impl From<bool> for Node {
    fn from(b: bool) -> Self {
        Self(Yaml::Boolean(b))
    }
}

impl From<u32> for Node {
    fn from(n: u32) -> Self {
        Self(Yaml::Integer(n.into()))
    }
}

impl From<u16> for Node {
    fn from(n: u16) -> Self {
        Self(Yaml::Integer(n.into()))
    }
}

impl From<u8> for Node {
    fn from(n: u8) -> Self {
        Self(Yaml::Integer(n.into()))
    }
}

impl From<IpAddr> for Node {
    fn from(ip: IpAddr) -> Self {
        Self(Yaml::String(ip.to_string()))
    }
}

impl From<&IpAddr> for Node {
    fn from(ip: &IpAddr) -> Self {
        Self(Yaml::String(ip.to_string()))
    }
}

impl From<IpNet> for Node {
    fn from(net: IpNet) -> Self {
        Self(Yaml::String(net.to_string()))
    }
}

/// Writes `network: <body>` as a YAML document without the `---` marker, ending in a newline.
pub(super) fn document(body: Map) -> String {
    let mut root = Map::new();
    root.put("network", body);
    let mut out = String::new();
    // Writing to a String cannot fail; an error would leave the text cut short, which the
    // renderers' tests would catch.
    let _ = YamlEmitter::new(&mut out).dump(&Yaml::Hash(root.0));
    let mut text = out.strip_prefix("---\n").unwrap_or(&out).to_owned();
    text.push('\n');
    text
}
