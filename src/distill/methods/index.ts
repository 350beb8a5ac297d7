// Every distillation method, one export line each: distill/registry.ts builds its table from this module, so a new
// method is its file plus one line here. Listing order comes from each method's `order`.
export { ce } from './ce.js';
export { kd } from './kd.js';
export { dtkd } from './dtkd.js';
export { lelp } from './lelp.js';
