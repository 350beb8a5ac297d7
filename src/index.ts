// kd-toolkit's library entry: the data readers and the training engine.
export * from './data/read.js';
export * from './data/split.js';
export * from './data/labels.js';
export type { Example } from './data/example.js';
export { DataError, FormatError, ConfigError, type Reject } from './data/errors.js';
export * as engine from './engine/index.js';
