// The students `kd train --student NAME` and recipes know: one line each.
import { lookup } from '../util/registry.js';
import type { StudentDefinition } from './student.js';
import { ngram } from './ngram.js';
import { transformer } from './transformer.js';

export const STUDENTS: Record<string, StudentDefinition<never>> = {
  ngram: ngram as StudentDefinition<never>,
  transformer: transformer as StudentDefinition<never>,
};

/** The student called `name`; an unknown name is an OptionError listing the known ones. */
export function getStudent(name: string): StudentDefinition<unknown> {
  return lookup(STUDENTS, 'student', name) as StudentDefinition<unknown>;
}

/** The student's defaults with `settings` merged onto them (undefined entries keep the default). */
export function resolveStudentSettings(name: string, settings: Record<string, unknown> = {}): StudentDefinition<unknown>['defaults'] {
  const defined = Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined));
  return { ...getStudent(name).defaults, ...defined } as StudentDefinition<unknown>['defaults'];
}
