// Every student architecture, one export line each: student/registry.ts builds its table from this module, so a new
// student is its file plus one line here. Listing order comes from each student's `order`.
export { ngram } from './ngram.js';
export { transformer } from './transformer.js';
