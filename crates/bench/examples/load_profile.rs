//! Where a YAML load spends its time: granit's events alone, the span trees
//! (`parse_documents`), their drop, and the whole load (typing, validation, lowering, merge).
//!
//! `cargo run --release -p bulkhead-bench --example load_profile FILE` times each stage twice
//! (`RAYON_NUM_THREADS=1` for one core's figures). With `MODE=events|tree|load` it runs that
//! stage alone, once, for an instruction count that repeats where wall time on this machine
//! does not: `MODE=tree RAYON_NUM_THREADS=1 valgrind --tool=callgrind .../load_profile FILE`.
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("path to a YAML file");
    let text = std::fs::read_to_string(&path).expect("readable");
    let mb = text.len() as f64 / 1e6;
    let load = || {
        bulkhead_k8s::load(
            &[bulkhead_k8s::Input::new(path.clone(), text.clone())],
            &bulkhead_k8s::LoadOptions::default(),
        )
    };
    match std::env::var("MODE").as_deref() {
        Ok("events") => {
            println!(
                "{} events",
                granit_parser::Parser::new_from_str(&text).count()
            );
            return;
        }
        Ok("tree") => {
            let documents = bulkhead_k8s::yaml_tree::parse_documents(&text);
            println!("{} documents", documents.len());
            return;
        }
        Ok("load") => {
            println!("{} policies", load().cluster.policies.len());
            return;
        }
        Ok(other) => panic!("MODE is events, tree or load, not {other:?}"),
        Err(_) => {}
    }
    for _ in 0..2 {
        let t = Instant::now();
        let events = granit_parser::Parser::new_from_str(&text).count();
        let e = t.elapsed().as_secs_f64();
        println!(
            "granit events only {e:.2} s, {:.1} MB/s ({events} events)",
            mb / e
        );
        let t = Instant::now();
        let documents = bulkhead_k8s::yaml_tree::parse_documents(&text);
        let e = t.elapsed().as_secs_f64();
        println!("parse_documents {e:.2} s, {:.1} MB/s", mb / e);
        let t = Instant::now();
        drop(documents);
        println!("drop of the trees {:.2} s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let snapshot = load();
        let e = t.elapsed().as_secs_f64();
        println!(
            "full load {e:.2} s, {:.1} MB/s ({} policies, {} pods)",
            mb / e,
            snapshot.cluster.policies.len(),
            snapshot.cluster.pods.len()
        );
    }
}

/// The allocator the `bulkhead` binary uses, so the split matches whole processes.
#[global_allocator]
static ALLOCATOR: bulkhead_allocator::MiMalloc = bulkhead_allocator::MiMalloc;
