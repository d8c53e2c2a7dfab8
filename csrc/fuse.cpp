// fuse: group elementwise equations into regions, one kernel each.
// Walking backwards from the outputs, a fusible node joins the region of its consumers only if every
// consumer is in that one region and it is not a graph output; otherwise it starts a region of its own.
// Regions therefore have one output, and no value computed inside a region is needed outside it.
#include <algorithm>
#include <unordered_set>

#include "graph.h"

namespace kiln {

namespace {

// A last-axis keepdims reduction that engine.py marked (ints = {1}) may join a row region.
bool row_reduction(const Graph& g, const Node& n) {
  return g.ops[n.op].kind == "reduction" && n.ints.size() == 1 && n.ints[0] == 1 && !g.shapeless;
}

bool fusible(const Graph& g, const Node& n, const std::vector<bool>& banned) {
  if (banned[n.out]) {
    return false;
  }
  if (row_reduction(g, n)) {
    return true;
  }
  if (!g.ops[n.op].fusible || n.expr.empty()) {
    return false;
  }
  if (g.values[n.out].dtype == kC64) {
    return false;
  }
  for (int v : n.inputs) {
    if (g.values[v].dtype == kC64) {
      return false;
    }
  }
  return true;
}

int count_external(const Graph& g, const std::vector<int>& members_out, const std::vector<int>& candidate_inputs,
                   const std::vector<int>& region_inputs) {
  std::unordered_set<int> ext;
  for (int v : region_inputs) {
    ext.insert(v);
  }
  for (int v : members_out) {
    ext.erase(v);
  }
  for (int v : candidate_inputs) {
    if (g.values[v].kind != kLiteral) {
      ext.insert(v);
    }
  }
  return static_cast<int>(ext.size());
}

// External inputs of a region, in order of first use (a deterministic, structural order).
std::vector<int> region_inputs(const Graph& g, const std::vector<int>& nodes) {
  std::unordered_set<int> inside;
  for (int i : nodes) {
    inside.insert(g.nodes[i].out);
  }
  std::vector<int> out;
  std::unordered_set<int> seen;
  for (int i : nodes) {
    for (int v : g.nodes[i].inputs) {
      if (g.values[v].kind == kLiteral || inside.count(v) || seen.count(v)) {
        continue;
      }
      seen.insert(v);
      out.push_back(v);
    }
  }
  return out;
}

bool is_reduction_region(const Graph& g, const std::vector<int>& nodes) {
  for (int i : nodes) {
    if (row_reduction(g, g.nodes[i])) {
      return true;
    }
  }
  return false;
}

// A row region's values all have the row shape R = (..., N) or the per-row shape (..., 1); its inputs
// also may be single elements. Its only shape-changing nodes are its reductions.
bool valid_row_region(const Graph& g, const std::vector<int>& nodes, const std::vector<int>& inputs) {
  std::vector<int64_t> row;
  for (int i : nodes) {
    const Node& n = g.nodes[i];
    if (row_reduction(g, n)) {
      row = g.values[n.inputs[0]].shape;
      break;
    }
  }
  if (row.empty()) {
    return false;
  }
  std::vector<int64_t> cell = row;
  cell.back() = 1;
  auto one = [](const std::vector<int64_t>& s) {
    for (int64_t d : s) {
      if (d != 1) {
        return false;
      }
    }
    return s.size() <= 1;
  };
  for (int i : nodes) {
    const Node& n = g.nodes[i];
    const std::string& kind = g.ops[n.op].kind;
    const auto& s = g.values[n.out].shape;
    if (row_reduction(g, n)) {
      if (g.values[n.inputs[0]].shape != row) {
        return false;
      }
      continue;
    }
    if (kind != "unary" && kind != "binary" && kind != "ternary") {
      return false;
    }
    if (s != row && s != cell) {
      return false;
    }
    for (int v : n.inputs) {
      const auto& vs = g.values[v].shape;
      if (g.values[v].kind != kLiteral && vs != row && vs != cell && !(s == row && one(vs))) {
        return false;
      }
    }
  }
  for (int v : inputs) {
    const auto& vs = g.values[v].shape;
    if (vs != row && vs != cell && !one(vs)) {
      return false;
    }
  }
  return true;
}

Fused fuse_once(const Graph& g, int max_inputs, const std::vector<bool>& banned) {
  const int n_nodes = static_cast<int>(g.nodes.size());
  std::vector<std::vector<int>> consumers(g.values.size());
  for (int i = 0; i < n_nodes; ++i) {
    if (!g.nodes[i].alive) {
      continue;
    }
    for (int v : g.nodes[i].inputs) {
      consumers[v].push_back(i);
    }
  }
  std::unordered_set<int> outputs(g.outputs.begin(), g.outputs.end());
  std::vector<int> region_of(n_nodes, -1);
  std::vector<std::vector<int>> members;   // node ids, collected backwards
  std::vector<std::vector<int>> ext_inputs;  // current external inputs per region (may repeat)

  for (int i = n_nodes - 1; i >= 0; --i) {
    const Node& n = g.nodes[i];
    if (!n.alive || !fusible(g, n, banned)) {
      continue;
    }
    int target = -1;
    bool joinable = !outputs.count(n.out) && !consumers[n.out].empty();
    for (int c : consumers[n.out]) {
      int r = region_of[c];
      if (r < 0 || (target >= 0 && r != target)) {
        joinable = false;
        break;
      }
      target = r;
    }
    if (joinable) {
      std::vector<int> outs;
      for (int m : members[target]) {
        outs.push_back(g.nodes[m].out);
      }
      outs.push_back(n.out);
      joinable = count_external(g, outs, n.inputs, ext_inputs[target]) <= max_inputs;
    }
    if (!joinable) {
      target = static_cast<int>(members.size());
      members.emplace_back();
      ext_inputs.emplace_back();
    }
    region_of[i] = target;
    members[target].push_back(i);
    for (int v : n.inputs) {
      ext_inputs[target].push_back(v);
    }
  }

  Fused result;
  std::vector<int> region_index(members.size(), -1);
  for (size_t r = 0; r < members.size(); ++r) {
    std::vector<int> nodes = members[r];
    std::reverse(nodes.begin(), nodes.end());
    // A lone broadcast is a view in numpy: cheaper than a kernel.
    if (nodes.size() == 1 && g.ops[g.nodes[nodes[0]].op].kind != "unary" &&
        g.ops[g.nodes[nodes[0]].op].kind != "binary" && g.ops[g.nodes[nodes[0]].op].kind != "ternary") {
      region_of[nodes[0]] = -1;
      continue;
    }
    Region reg;
    reg.nodes = nodes;
    reg.inputs = region_inputs(g, nodes);
    reg.out = g.nodes[nodes.back()].out;
    reg.rows = is_reduction_region(g, nodes);
    region_index[r] = static_cast<int>(result.regions.size());
    result.regions.push_back(std::move(reg));
  }
  // Steps in the original order; a region runs where its output node stood.
  for (int i = 0; i < n_nodes; ++i) {
    if (!g.nodes[i].alive) {
      continue;
    }
    int r = region_of[i];
    if (r < 0) {
      result.steps.push_back(Step{-1, i});
      continue;
    }
    int idx = region_index[r];
    if (result.regions[idx].nodes.back() == i) {
      result.steps.push_back(Step{idx, -1});
    }
  }
  return result;
}

}  // namespace

// Reductions join regions when rows is true (a language with a row kernel); a region with a reduction
// that is not a valid row region has its reductions banned and the graph is fused again.
Fused fuse(const Graph& g, int max_inputs, bool rows) {
  std::vector<bool> banned(g.values.size(), false);
  for (const Node& n : g.nodes) {
    if (!rows && n.alive && row_reduction(g, n)) {
      banned[n.out] = true;
    }
  }
  for (;;) {
    Fused f = fuse_once(g, max_inputs, banned);
    bool again = false;
    for (const Region& r : f.regions) {
      if (!r.rows || valid_row_region(g, r.nodes, r.inputs)) {
        continue;
      }
      for (int i : r.nodes) {
        if (row_reduction(g, g.nodes[i])) {
          banned[g.nodes[i].out] = true;
          again = true;
        }
      }
    }
    if (!again) {
      return f;
    }
  }
}

}  // namespace kiln
