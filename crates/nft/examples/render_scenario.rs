//! Prints the ruleset of node-1 for a manifest directory, every pod on an interface `vethN`.
fn main() {
    let paths: Vec<std::path::PathBuf> = std::env::args().skip(1).map(Into::into).collect();
    let (inputs, _) = bulkhead_k8s::read_paths(&paths);
    let snapshot = bulkhead_k8s::load(&inputs, &bulkhead_k8s::LoadOptions::default());
    let engine = bulkhead_engine::Engine::new(
        &snapshot.cluster,
        bulkhead_engine::EngineOptions::for_cluster(&snapshot.cluster),
    );
    let interfaces = snapshot
        .cluster
        .pods
        .iter()
        .enumerate()
        .map(|(i, p)| (p.key(), format!("veth{i}")))
        .collect();
    let (ruleset, _) = bulkhead_nft::compile(
        &engine,
        &bulkhead_nft::CompileOptions {
            node: "node-1".into(),
            interfaces,
            audit_namespaces: Default::default(),
            pod_interface_prefixes: Vec::new(),
            pod_cidrs: Vec::new(),
        },
    );
    print!("{}", bulkhead_nft::render::render(&ruleset));
}
