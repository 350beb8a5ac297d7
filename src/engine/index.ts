// The training engine: ONNX graph builder, reverse-mode autodiff, optimizers and the Trainer
// that runs whole training steps in ONNX Runtime.
export { Graph, Value, OPSET, IR_VERSION, int, float, str, ints, floats, type Attr, type GraphNode } from './graph.js';
export * as op from './ops.js';
export { gradients, unbroadcast, differentiableOps, hasGradRule } from './autodiff.js';
export {
  ModelContext,
  declareInputs,
  modelParamSpecs,
  PARAM_PREFIX,
  type ModelDefinition,
  type BuildMode,
  type InputSpecs,
  type ParamOptions,
} from './context.js';
export * as layers from './layers.js';
export * as losses from './losses.js';
export { learningRate, hyperValues, stateSlots, type OptimizerConfig, type ScheduleConfig } from './optim.js';
export { ParameterStore, normal, uniform, xavier, zeros, ones, type Init, type ParamSpec, type FloatArray } from './params.js';
export { Rng, graphUniform, splitMix64 } from './rng.js';
export { saveSafetensors, loadSafetensors, encodeSafetensors, type NamedTensor } from './safetensors.js';
export { createSession, deviceProblem, DeviceError, DEVICES, ort, type Device, type SessionOptions } from './session.js';
export { Trainer, type TrainerOptions, type StepResult, type StepTrainer } from './trainer.js';
export { BagTrainer, type BagModelSpec, type BagTrainerOptions } from './bag-trainer.js';
export { buildTrainStep, exportModel, type LossDefinition, type TrainStepSpec } from './train-graph.js';
export type { DType, FloatDType } from './dtype.js';
export type { Dim, Shape } from './shape.js';
