// simplify: drop no-ops (and shape chains that undo themselves), merge common subexpressions, remove dead
// code, repeated to a fixed point.
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

// The value a shape node reduces to, or -1: a transpose of a transpose that undoes it, or a chain of
// reshapes (reshape, flatten, squeeze, expand_dims) that ends at its start's shape. Both are exact (the
// same elements in the same order); the chain only at the traced shapes, so not in shapeless graphs.
int shape_source(const Graph& g, const Node& n) {
  const OpInfo& op = g.ops[n.op];
  if (n.inputs.size() != 1) {
    return -1;
  }
  const Value& in = g.values[n.inputs[0]];
  if (op.permutes) {
    if (in.kind != kNode || !g.nodes[in.node].alive || !g.ops[g.nodes[in.node].op].permutes) {
      return -1;
    }
    const Node& inner = g.nodes[in.node];
    if (inner.ints.size() != n.ints.size()) {
      return -1;
    }
    for (size_t i = 0; i < n.ints.size(); ++i) {
      // out axis i reads the inner output's axis n.ints[i], which reads the source's inner.ints[n.ints[i]]
      const int64_t a = n.ints[i];
      if (a < 0 || a >= static_cast<int64_t>(inner.ints.size()) || inner.ints[a] != static_cast<int64_t>(i)) {
        return -1;
      }
    }
    return inner.inputs[0];
  }
  if (!op.reshapes || g.shapeless) {
    return -1;
  }
  const Value& out = g.values[n.out];
  int source = n.inputs[0];
  while (g.values[source].kind == kNode) {
    const Node& producer = g.nodes[g.values[source].node];
    if (!producer.alive || !g.ops[producer.op].reshapes || producer.inputs.size() != 1) {
      break;
    }
    source = producer.inputs[0];
    if (g.values[source].shape == out.shape && g.values[source].dtype == out.dtype) {
      return source;
    }
  }
  return -1;
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
      const int source = is_output ? -1 : shape_source(g, n);
      if (source >= 0) {
        repl[n.out] = source;
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
