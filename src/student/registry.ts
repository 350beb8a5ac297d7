// The students `kd train --student NAME` and recipes know, built from students.ts (one export line each).
import { lookup, registryOf } from '../util/registry.js';
import type { StudentDefinition } from './student.js';
import * as allStudents from './students.js';

/**
 * Every student architecture by name (`kd train --student NAME`, a recipe's `students:`), one export line each in
 * `student/students.ts`, listed in the order the students declare (`order`).
 *
 * @example
 * ```ts
 * import { STUDENTS } from 'kd-toolkit';
 * console.log(Object.keys(STUDENTS));
 * // [ 'ngram', 'transformer' ]
 * ```
 */
export const STUDENTS: Record<string, StudentDefinition<never>> = registryOf(
  Object.values(allStudents) as StudentDefinition<never>[],
  'student',
);

/** The student called `name`; an unknown name is an OptionError listing the known ones. */
export function getStudent(name: string): StudentDefinition<unknown> {
  return lookup(STUDENTS, 'student', name) as StudentDefinition<unknown>;
}

/** The student's defaults with `settings` merged onto them (undefined entries keep the default). */
export function resolveStudentSettings(name: string, settings: Record<string, unknown> = {}): StudentDefinition<unknown>['defaults'] {
  const defined = Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined));
  return { ...getStudent(name).defaults, ...defined } as StudentDefinition<unknown>['defaults'];
}
