//! template.yaml as data (CloudFormation short-form tags kept as tags).

use serde_yaml::Value;
use serde_yaml::value::TaggedValue;

pub struct Template(pub Value);

/// One `HttpApi` event of a function: `METHOD /path`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub method: String,
    pub path: String,
    pub function: String,
    pub binary: String,
    /// `false` when the event sets `Auth: Authorizer: NONE`.
    pub authorized: bool,
}

impl Template {
    pub fn load() -> Self {
        let text = std::fs::read_to_string(super::repo_root().join("template.yaml"))
            .expect("template.yaml");
        Self(serde_yaml::from_str(&text).expect("template.yaml parses"))
    }

    pub fn resources(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0["Resources"]
            .as_mapping()
            .expect("Resources")
            .iter()
            .map(|(k, v)| (k.as_str().expect("logical id"), v))
    }

    pub fn resources_of_type<'a>(
        &'a self,
        ty: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.resources()
            .filter(move |(_, r)| r["Type"].as_str() == Some(ty))
    }

    /// `(logical id, binary name)` of every function.
    pub fn functions(&self) -> Vec<(String, String)> {
        self.resources_of_type("AWS::Serverless::Function")
            .map(|(id, r)| {
                let binary = r["Metadata"]["BuildProperties"]["Binary"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{id} has no Metadata.BuildProperties.Binary"));
                (id.to_owned(), binary.to_owned())
            })
            .collect()
    }

    pub fn routes(&self) -> Vec<Route> {
        let mut routes = Vec::new();
        for (id, r) in self.resources_of_type("AWS::Serverless::Function") {
            let binary = r["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let Some(events) = r["Properties"]["Events"].as_mapping() else {
                continue;
            };
            for event in events.values() {
                if event["Type"].as_str() != Some("HttpApi") {
                    continue;
                }
                let p = &event["Properties"];
                routes.push(Route {
                    method: p["Method"].as_str().expect("Method").to_uppercase(),
                    path: p["Path"].as_str().expect("Path").to_owned(),
                    function: id.to_owned(),
                    binary: binary.clone(),
                    authorized: p["Auth"]["Authorizer"].as_str() != Some("NONE"),
                });
            }
        }
        routes.sort();
        routes
    }

    /// The global environment variables that `!Ref` a resource:
    /// `(variable, logical id)`.
    /// Every `VAR: !Ref X` the functions get, globally or each its own
    /// (deduplicated).
    pub fn env_refs(&self) -> Vec<(String, String)> {
        let mut refs = std::collections::BTreeSet::new();
        let globals = &self.0["Globals"]["Function"]["Environment"]["Variables"];
        let own = self
            .resources_of_type("AWS::Serverless::Function")
            .map(|(_, f)| f["Properties"]["Environment"]["Variables"].clone())
            .collect::<Vec<_>>();
        for vars in std::iter::once(globals.clone()).chain(own) {
            if let Some(m) = vars.as_mapping() {
                for (k, v) in m {
                    if let (Some(k), Some(target)) = (k.as_str(), ref_target(v)) {
                        refs.insert((k.to_owned(), target.to_owned()));
                    }
                }
            }
        }
        refs.into_iter().collect()
    }
}

/// The logical id of a `!Ref X` or `{Ref: X}`.
pub fn ref_target(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) => {
            let TaggedValue { tag, value } = tagged.as_ref();
            (tag == "!Ref").then(|| value.as_str()).flatten()
        }
        Value::Mapping(m) => m.get("Ref")?.as_str(),
        _ => None,
    }
}
