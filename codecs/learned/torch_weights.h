// Weights read out of a TorchScript file into plain float vectors, for the networks
// NSAT runs on its own kernels (the arithmetic is ours, the numbers are the model's).
#pragma once

#include <torch/script.h>

#include <map>
#include <string>
#include <vector>

#include "codecs/error.h"

namespace nsat {

using NamedTensors = std::map<std::string, at::Tensor>;

inline NamedTensors namedTensors(const torch::jit::Module& module) {
  NamedTensors tensors;
  for (const auto& item : module.named_parameters(true)) tensors[item.name] = item.value;
  for (const auto& item : module.named_buffers(true)) tensors[item.name] = item.value;
  return tensors;
}

// The tensor `name` of `file`, which must have `shape`; throws nsat::Error otherwise.
inline std::vector<float> tensorFloats(const NamedTensors& tensors, const std::string& file,
                                       const std::string& name, const std::vector<int64_t>& shape) {
  const auto found = tensors.find(name);
  if (found == tensors.end()) throw Error(file + " has no " + name);
  const at::Tensor tensor = found->second.to(at::kFloat).contiguous();
  if (tensor.sizes().vec() != shape) throw Error(file + ": " + name + " has another shape");
  return std::vector<float>(tensor.data_ptr<float>(), tensor.data_ptr<float>() + tensor.numel());
}

}  // namespace nsat
