// kd-toolkit's library entry (`import { ... } from 'kd-toolkit'`): the pipeline's main pieces in
// the order they run (data → teacher → cache → methods and students → eval → report, and
// runDistill for all of it), the errors a user can cause, and the training engine.

// Data: readers, splits, labels.
export * from './data/read.js';
export * from './data/split.js';
export * from './data/labels.js';
export { isLabelled, type Example, type LabelledExample } from './data/example.js';

// Teacher: any Hugging Face-layout ONNX sequence classifier.
export {
  Teacher,
  type TeacherOptions,
  type TeacherConfig,
  type PredictOptions,
  type TeacherOutputs,
  type PrecisionCheck,
  type TeacherGraphTransform,
} from './teacher/teacher.js';

// int8: any HF-layout ONNX model → onnx/model_quantized.onnx (transformers.js' default q8).
export { quantizeModel, AgreementError, type QuantizeOptions, type QuantizeReport, type QuantizeCheck } from './quantize/model.js';
export { quantizeGraph, AlreadyQuantizedError, NothingToQuantizeError, type QuantizeGraphOptions } from './quantize/graph.js';
// int8 teachers: quantized at load, checked against fp32 (kd teacher / kd cache build --quantize int8).
export {
  loadTeacher,
  int8TeacherTransform,
  TeacherAgreementError,
  TEACHER_PRECISIONS,
  type LoadTeacherOptions,
  type TeacherQuantize,
} from './quantize/teacher.js';

// Cache of teacher outputs.
export { buildCache, type BuildOptions } from './cache/build.js';
export { CacheReader, verifyCache, mergeCaches, type CachedRows } from './cache/reader.js';
export type { CacheManifest } from './cache/manifest.js';

// Distillation methods and students.
export { METHODS, getMethod, parseMethodOptions } from './distill/registry.js';
export type { DistillMethod, MethodData, LossParts } from './distill/method.js';
export { STUDENTS, getStudent } from './student/registry.js';
export { trainStudent, trainStudentSeeds, type StudentRunOptions, type StudentRunResult, type SeedSummary } from './train/student-run.js';
export { Student } from './student/runtime.js';
export type { StudentKind } from './student/export.js';
export type { StudentCard, StudentDefinition } from './student/student.js';

// Evaluation, report, the whole pipeline.
export { evaluateModel, type EvalReport } from './eval/evaluate.js';
export { buildReport, loadRun, type ReportRun, type ReportContext } from './eval/report.js';
export { runDistill, type DistillOptions } from './pipeline/distill.js';

// Transfer sets: augmented copies of data files (kd augment).
export {
  augmentExamples,
  augmentStream,
  augmentedId,
  AUGMENT_DEFAULTS,
  type AugmentOptions,
  type AugmentConfig,
  type AugmentSummary,
} from './pipeline/augment.js';
export { augmentText, splitWords, WordListReplacer, type AugmentRules, type AugmentedText, type WordReplacer } from './text/augment.js';
export { EmbeddingNeighbours, wholeWordVocabulary } from './teacher/word-neighbours.js';

// Errors: every one a user can cause is a UserError (message: what, where, how to fix).
export { UserError, OptionError } from './errors.js';
export { DataError, FormatError, ConfigError, UnlabelledDataError, type LabelNeed, type Reject } from './data/errors.js';
export { CacheMismatchError } from './cache/manifest.js';
export { UnsafeCachePathError } from './cache/files.js';
export { ShardFormatError, NO_LABEL } from './cache/format.js';
export { MethodOptionError } from './distill/method.js';
export { HeadNotFoundError } from './teacher/head.js';
export { DeviceError, type Device } from './engine/session.js';
export { DamagedFileError } from './engine/safetensors.js';
export { OutputPathError } from './util/fs.js';
export { LockHeldError } from './util/lock.js';

// The training engine (graph builder, autodiff, optimizers, Trainer).
export * as engine from './engine/index.js';
