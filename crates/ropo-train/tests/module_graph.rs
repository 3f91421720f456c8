//! The module graph of `ropo-train` stays acyclic and one-way: no import cycle among the
//! crate's modules, the records module imports nothing of the crate, the training loop never
//! imports a report or a plot, and `docs/architecture.md` draws exactly these arrows.
//!
//! The graph is read from the sources: an arrow `a --> b` for every `crate::b` path in a file
//! of module `a` (`src/a.rs` or `src/a/…`), comments left out. Submodules of a folder module
//! count as that module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn the_modules_import_each_other_without_a_cycle() {
    let graph = module_graph();
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn records_import_nothing_and_the_loop_imports_no_report_or_plot() {
    let graph = module_graph();
    assert_eq!(graph["records"], BTreeSet::new(), "records imports nothing");
    let ends = ["report", "plots", "rounds_report", "trainer_output"];
    for (module, targets) in &graph {
        if ends.contains(&module.as_str()) {
            continue;
        }
        for end in ends {
            assert!(!targets.contains(end), "{module} imports {end}");
        }
    }
}

#[test]
fn the_architecture_doc_draws_the_graph_as_it_is() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/architecture.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let drawn: BTreeSet<(String, String)> = doc
        .lines()
        .skip_while(|line| *line != "```mermaid")
        .take_while(|line| *line != "```")
        .filter_map(|line| line.trim().split_once(" --> "))
        .map(|(from, to)| (from.trim().to_string(), to.trim().to_string()))
        .collect();
    let actual: BTreeSet<(String, String)> = module_graph()
        .into_iter()
        .flat_map(|(from, targets)| targets.into_iter().map(move |to| (from.clone(), to)))
        .collect();
    let missing: Vec<String> = actual
        .difference(&drawn)
        .map(|(a, b)| format!("    {a} --> {b}"))
        .collect();
    let stale: Vec<String> = drawn
        .difference(&actual)
        .map(|(a, b)| format!("    {a} --> {b}"))
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/architecture.md is out of date;\nnot drawn:\n{}\ndrawn but gone:\n{}",
        missing.join("\n"),
        stale.join("\n")
    );
}

/// Every module of `src/` (but `lib`) with the modules it imports.
fn module_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&src);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let code = without_comments(&std::fs::read_to_string(file).unwrap());
        for target in crate_paths(&code) {
            if target != module && modules.contains(&target) {
                graph.get_mut(&module).unwrap().insert(target);
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The top-level module a file belongs to (`None` for `lib.rs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_string())
}

fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| line.split_once("//").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segment of every `crate::…` path, with `crate::{a, b::c}` giving `a` and `b`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 1 => break,
                    '}' => depth -= 1,
                    ',' if depth == 1 => item_start = true,
                    c if depth == 1 && item_start && (c.is_alphanumeric() || c == '_') => {
                        found.push(identifier(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.push(identifier(rest));
        }
    }
    found
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// A cycle of the graph as a path that ends where it starts, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in &graph[node] {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn a_planted_cycle_is_found() {
    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(from, to)| (from.to_string(), BTreeSet::from([to.to_string()])))
        .collect();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    assert_eq!(
        crate_paths("use crate::{a::B, c, d::{e, f}};\nlet x = crate::g::h();"),
        ["a", "c", "d", "g"]
    );
}
