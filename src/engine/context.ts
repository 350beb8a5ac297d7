// What a model's forward pass builds with: parameters, embeddings and dropout, resolved
// differently for a training step, an evaluation graph and a standalone export.
import { Graph, type Value } from './graph.js';
import type { DType, FloatDType } from './dtype.js';
import * as op from './ops.js';
import { graphUniform } from './rng.js';
import type { Init, ParameterStore, ParamSpec } from './params.js';
import type { Shape } from './shape.js';

/**
 * - `train`: parameters are graph inputs; sparse tables arrive as the touched rows plus ids
 *   remapped into them; dropout is on.
 * - `eval`: parameters are graph inputs (fed from the live values), no dropout.
 * - `export`: parameters are initializers holding their values; a standalone model.
 */
export type BuildMode = 'train' | 'eval' | 'export';

export interface ParamOptions {
  init: Init;
  /** Weight decay applies (default: true for rank >= 2, false for vectors). */
  decay?: boolean;
}

export interface SparseTable {
  spec: ParamSpec;
  /** Name of the batch input holding the ids that index the table. */
  idsInput: string;
  rows: Value;
  local: Value;
}

export const PARAM_PREFIX = 'p/';

/**
 * A later step of a graph that runs several optimizer steps: parameters are values computed by
 * the previous step's update, and step-specific inputs carry `suffix`.
 */
export interface StepBinding {
  suffix: string;
  paramValue(spec: ParamSpec): Value;
}

/** A model's declared batch inputs. */
export type InputSpecs = Record<string, { dtype: DType; shape: Shape }>;

export class ModelContext {
  readonly params = new Map<string, { spec: ParamSpec; value: Value }>();
  readonly sparse = new Map<string, SparseTable>();
  /** Every parameter spec in declaration order (initialization draws in this order). */
  private readonly declared: ParamSpec[] = [];
  /** Mutable state shared with scoped views (see `scoped`). */
  private readonly shared: { dropoutSites: number; seedInput: Value | null } = { dropoutSites: 0, seedInput: null };
  /** Prepended to parameter names by this view. */
  private prefix = '';

  constructor(
    readonly g: Graph,
    readonly dtype: FloatDType,
    readonly mode: BuildMode,
    private readonly store?: ParameterStore,
    private readonly step?: StepBinding,
  ) {
    if (mode === 'export' && !store) throw new Error("ModelContext: 'export' needs a ParameterStore with values");
  }

  get training(): boolean {
    return this.mode === 'train';
  }

  /**
   * A view of this context whose parameters are named `prefix + name` (ensemble members,
   * sub-models); it shares the graph, parameters and dropout state.
   */
  scoped(prefix: string): ModelContext {
    const view = Object.create(this) as ModelContext;
    view.prefix = this.prefix + prefix;
    return view;
  }

  /** A parameter; the same name returns the same value (weight tying). */
  param(name: string, shape: readonly number[], opts: ParamOptions): Value {
    name = this.prefix + name;
    return this.declare({ name, shape: [...shape], init: opts.init, decay: opts.decay ?? shape.length >= 2, sparse: false }).value;
  }

  private declare(spec: ParamSpec): { spec: ParamSpec; value: Value } {
    const existing = this.params.get(spec.name);
    if (existing) {
      if (existing.spec.shape.join(',') !== spec.shape.join(','))
        throw new Error(`parameter '${spec.name}' declared with shapes [${existing.spec.shape}] and [${spec.shape}]`);
      return existing;
    }
    let value: Value;
    if (this.mode === 'export') {
      const data = this.store!.get(spec.name);
      value = this.g.constant(data, this.dtype, spec.shape, spec.name);
    } else if (this.step) {
      value = this.step.paramValue(spec);
    } else {
      value = this.g.input(`${PARAM_PREFIX}${spec.name}`, this.dtype, spec.shape);
    }
    const entry = { spec, value };
    this.params.set(spec.name, entry);
    this.declared.push(spec);
    return entry;
  }

  /**
   * Embedding lookup `table[ids]`. With `sparse`, a training step receives only the rows
   * the batch touches, so its cost does not grow with the table.
   */
  embedding(name: string, rows: number, dim: number, ids: Value, opts: ParamOptions & { sparse?: boolean }): Value {
    name = this.prefix + name;
    const sparse = Boolean(opts.sparse) && this.mode === 'train';
    if (!sparse) {
      const table = this.declare({
        name,
        shape: [rows, dim],
        init: opts.init,
        decay: opts.decay ?? false,
        sparse: Boolean(opts.sparse),
      }).value;
      return op.gather(table, ids);
    }
    if (ids.producer !== null) throw new Error(`sparse embedding '${name}': ids must be a batch input, got ${ids}`);
    let entry = this.sparse.get(name);
    if (!entry) {
      const spec: ParamSpec = { name, shape: [rows, dim], init: opts.init, decay: opts.decay ?? false, sparse: true };
      entry = {
        spec,
        idsInput: ids.name,
        rows: this.g.input(`sparse/${name}/rows`, this.dtype, ['U', dim]),
        local: this.g.input(`sparse/${name}/local`, ids.dtype, ids.shape),
      };
      this.sparse.set(name, entry);
      this.declared.push(spec);
    } else if (entry.idsInput !== ids.name) {
      throw new Error(`sparse embedding '${name}' is indexed by '${entry.idsInput}' and '${ids.name}'; use one ids input per table`);
    }
    return op.gather(entry.rows, entry.local);
  }

  /** Inverted dropout with a seeded in-graph mask; identity outside training or for p = 0. */
  dropout(x: Value, p: number): Value {
    if (!(p >= 0 && p < 1)) throw new RangeError(`dropout probability must be in [0, 1), got ${p}`);
    if (!this.training || p === 0) return x;
    this.shared.seedInput ??= this.g.input(`dropout_seed${this.step?.suffix ?? ''}`, 'uint64', []);
    const u = graphUniform(x, this.shared.seedInput, ++this.shared.dropoutSites);
    const keep = op.cast(op.greater(u, p), x.dtype);
    return op.mul(x, op.mul(keep, 1 / (1 - p)));
  }

  get usesDropout(): boolean {
    return this.shared.seedInput !== null;
  }

  /** Every parameter spec (dense and sparse) in declaration order. */
  specs(): ParamSpec[] {
    return [...this.declared];
  }
}

/** A model: its batch inputs and a forward pass returning named outputs (at least `logits`). */
export interface ModelDefinition {
  inputs: InputSpecs;
  forward(ctx: ModelContext, inputs: Record<string, Value>): Record<string, Value>;
}

/** Declares `specs` as inputs of `g`. */
export function declareInputs(g: Graph, specs: InputSpecs): Record<string, Value> {
  return Object.fromEntries(Object.entries(specs).map(([name, s]) => [name, g.input(name, s.dtype, s.shape)]));
}

/** Parameter specs of a model, found by building it once. */
export function modelParamSpecs(model: ModelDefinition, dtype: FloatDType = 'float32'): ParamSpec[] {
  const g = new Graph('probe');
  const ctx = new ModelContext(g, dtype, 'eval');
  model.forward(ctx, declareInputs(g, model.inputs));
  return ctx.specs();
}
