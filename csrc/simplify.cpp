// simplify: drop no-ops, merge common subexpressions, remove dead code, repeated to a fixed point.
// Equal scalar literals are already one value (engine.py interns them by dtype and bits).
// A graph output is never replaced by another value, so outputs stay distinct, fresh buffers.
#include <map>
#include <tuple>
#include <unordered_set>

#include "graph.h"

namespace kiln {

namespace {

int resolve(std::vector<int>& repl, int v) {
  while (repl[v] != v) {
    repl[v] = repl[repl[v]];
    v = repl[v];
  }
  return v;
}

bool is_noop(const Graph& g, const Node& n) {
  const OpInfo& op = g.ops[n.op];
  if (n.inputs.size() != 1) {
    return false;
  }
  const Value& in = g.values[n.inputs[0]];
  const Value& out = g.values[n.out];
  if (op.identity) {
    return in.dtype == out.dtype && in.shape == out.shape;
  }
  if (!op.coerce || in.dtype != out.dtype || in.shape != out.shape) {
    return false;
  }
  // A same-shape broadcast or reshape is only a no-op at the traced shapes; astype is one at any shape.
  return !g.shapeless || op.kind == "unary";
}

// CSE must not merge draws from a random generator or anything with effects we cannot see.
bool mergeable(const Graph& g, const Node& n) {
  const std::string& kind = g.ops[n.op].kind;
  return kind != "random" && kind != "other";
}

int drop_dead(Graph& g) {
  std::vector<char> live(g.values.size(), 0);
  for (int v : g.outputs) {
    live[v] = 1;
  }
  int removed = 0;
  for (int i = static_cast<int>(g.nodes.size()) - 1; i >= 0; --i) {
    Node& n = g.nodes[i];
    if (!n.alive) {
      continue;
    }
    if (!live[n.out]) {
      n.alive = false;
      ++removed;
      continue;
    }
    for (int v : n.inputs) {
      live[v] = 1;
    }
  }
  return removed;
}

}  // namespace

int simplify(Graph& g) {
  std::unordered_set<int> outputs(g.outputs.begin(), g.outputs.end());
  int total = 0;
  for (;;) {
    std::vector<int> repl(g.values.size());
    for (size_t i = 0; i < repl.size(); ++i) {
      repl[i] = static_cast<int>(i);
    }
    std::map<std::tuple<int, std::string, std::vector<int>>, int> seen;
    int changed = 0;
    for (Node& n : g.nodes) {
      if (!n.alive) {
        continue;
      }
      for (int& v : n.inputs) {
        v = resolve(repl, v);
      }
      bool is_output = outputs.count(n.out) > 0;
      if (!is_output && is_noop(g, n)) {
        repl[n.out] = n.inputs[0];
        n.alive = false;
        ++changed;
        continue;
      }
      if (!mergeable(g, n)) {
        continue;
      }
      auto key = std::make_tuple(n.op, n.params, n.inputs);
      auto it = seen.find(key);
      if (it == seen.end()) {
        seen.emplace(std::move(key), n.out);
      } else if (!is_output) {
        repl[n.out] = it->second;
        n.alive = false;
        ++changed;
      }
    }
    changed += drop_dead(g);
    total += changed;
    if (changed == 0) {
      return total;
    }
  }
}

}  // namespace kiln
