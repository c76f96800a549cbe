//! ConfigMap `<fn>-code`: the handler file plus `package.json` / `requirements.txt` generated
//! from `source.dependencies`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::Ctx;
use crate::crd::Runtime;

/// Name of the code ConfigMap.
pub(crate) fn config_map_name(function: &str) -> String {
    format!("{function}-code")
}

/// The ConfigMap, when the function has inline code.
pub(crate) fn config_map(ctx: &Ctx<'_>) -> Option<ConfigMap> {
    let spec = &ctx.function.spec;
    let source = spec.source.as_ref()?;
    let code = source.code.as_ref()?;
    let file = spec.runtime.handler_file()?;
    let mut data = BTreeMap::from([(file.to_owned(), code.clone())]);
    if !source.dependencies.is_empty() {
        match spec.runtime {
            Runtime::Node => {
                let manifest = serde_json::json!({
                    "name": ctx.name,
                    "version": "1.0.0",
                    "private": true,
                    "dependencies": source.dependencies,
                });
                // A map of strings always serializes; fall back to an empty manifest otherwise.
                let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
                data.insert("package.json".to_owned(), text + "\n");
            }
            Runtime::Python => {
                let lines: String = source
                    .dependencies
                    .iter()
                    .map(|(name, version)| format!("{name}=={version}\n"))
                    .collect();
                data.insert("requirements.txt".to_owned(), lines);
            }
            Runtime::Go | Runtime::Custom => {}
        }
    }
    Some(ConfigMap {
        metadata: ctx.meta(config_map_name(&ctx.name), spec.primary_trigger().as_str()),
        data: Some(data),
        ..Default::default()
    })
}
