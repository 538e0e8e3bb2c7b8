//! The partials' include graph: cycles, and nesting summed along chains.
use std::collections::{BTreeMap, BTreeSet};

use super::{MAX_PARTIAL_DEPTH, MAX_TOTAL_NESTING};

/// A partial as a node of the include graph: the partials it includes and
/// its own deepest nesting.
pub type PartialGraph = BTreeMap<String, (BTreeSet<String>, usize)>;

/// What the include graph allows.
#[derive(Debug, Default)]
pub struct GraphReport {
    /// Per partial, what is wrong there.
    pub problems: BTreeMap<String, Vec<String>>,
    /// Per partial: the longest chain of partials from it (itself included)
    /// and the heaviest nesting along such a chain.
    pub cost: BTreeMap<String, (usize, usize)>,
}

impl GraphReport {
    /// The chain length and nesting a template adds by including `partials`.
    pub fn reach(&self, partials: &BTreeSet<String>) -> (usize, usize) {
        partials
            .iter()
            .filter_map(|p| self.cost.get(p))
            .fold((0, 0), |(c, w), (c2, w2)| (c.max(*c2), w.max(*w2)))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Colour {
    White,
    Grey,
    Black,
}

/// Check the include graph of the partials: a cycle (`a` → `b` → `a`)
/// would recurse until the stack overflows; chains deeper than
/// [`MAX_PARTIAL_DEPTH`] or whose nesting adds up past [`MAX_TOTAL_NESTING`]
/// come close. Each cycle is reported once, at the partial that closes it.
pub fn check_partial_graph(graph: &PartialGraph) -> GraphReport {
    let mut report = GraphReport::default();
    let mut colour: BTreeMap<&str, Colour> =
        graph.keys().map(|k| (k.as_str(), Colour::White)).collect();
    for n in graph.keys() {
        if colour.get(n.as_str()) == Some(&Colour::White) {
            visit(n, graph, &mut colour, &mut Vec::new(), &mut report);
        }
    }
    for (n, (chain, weight)) in &report.cost {
        let msg = if *chain > MAX_PARTIAL_DEPTH {
            format!(
                "partials include each other {chain} deep from here, over the limit of {MAX_PARTIAL_DEPTH}"
            )
        } else if *weight > MAX_TOTAL_NESTING {
            format!(
                "blocks nest {weight} deep across the partials included from here, over the limit of {MAX_TOTAL_NESTING}"
            )
        } else {
            continue;
        };
        report.problems.entry(n.clone()).or_default().push(msg);
    }
    report
}

fn visit<'g>(
    n: &'g str,
    graph: &'g PartialGraph,
    colour: &mut BTreeMap<&'g str, Colour>,
    stack: &mut Vec<&'g str>,
    report: &mut GraphReport,
) {
    colour.insert(n, Colour::Grey);
    stack.push(n);
    let (mut chain, mut weight) = (0, 0);
    let (edges, nesting) = match graph.get(n) {
        Some((e, k)) => (Some(e), *k),
        None => (None, 0),
    };
    for m in edges.into_iter().flatten() {
        let m = m.as_str();
        match colour.get(m).copied().unwrap_or(Colour::Black) {
            Colour::Grey => {
                let from = stack.iter().position(|x| *x == m).unwrap_or(0);
                let mut cycle: Vec<&str> = stack[from..].to_vec();
                cycle.push(m);
                report
                    .problems
                    .entry(n.to_string())
                    .or_default()
                    .push(format!(
                        "partials include each other in a cycle: {}",
                        cycle.join(" -> ")
                    ));
            }
            Colour::White => visit(m, graph, colour, stack, report),
            Colour::Black => {}
        }
        if let Some((c, w)) = report.cost.get(m) {
            chain = chain.max(*c);
            weight = weight.max(*w);
        }
    }
    stack.pop();
    colour.insert(n, Colour::Black);
    report
        .cost
        .insert(n.to_string(), (chain + 1, weight + nesting));
}
