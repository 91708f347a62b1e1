//! Where loading spends its time: YAML events, JSON conversion, typed deserialisation.
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("path to a YAML file");
    let text = std::fs::read_to_string(&path).expect("readable");
    let t = Instant::now();
    let events = raw_events(&text);
    println!("granit events only {:?} ({events} events)", t.elapsed());
    let t = Instant::now();
    let docs = bulkhead_k8s::yaml_tree::parse_documents(&text);
    println!("parse_documents {:?}", t.elapsed());
    let t = Instant::now();
    let json: Vec<_> = docs
        .iter()
        .filter_map(|d| d.as_ref().ok()?.root.as_ref().map(|r| r.to_json()))
        .collect();
    println!("to_json {:?}", t.elapsed());
    let t = Instant::now();
    for j in &json {
        if let Some(items) = j.get("items").and_then(|i| i.as_array()) {
            for item in items {
                let _p: k8s_openapi::api::core::v1::Pod =
                    serde_json::from_value(item.clone()).expect("pod");
            }
        }
    }
    println!("typed {:?}", t.elapsed());
    let t = Instant::now();
    let snapshot = bulkhead_k8s::load(
        &[bulkhead_k8s::Input::new(path.clone(), text.clone())],
        &bulkhead_k8s::LoadOptions::default(),
    );
    println!(
        "full load {:?} ({} pods)",
        t.elapsed(),
        snapshot.cluster.pods.len()
    );
}

#[allow(dead_code)]
fn raw_events(text: &str) -> usize {
    granit_parser::Parser::new_from_str(text).count()
}
