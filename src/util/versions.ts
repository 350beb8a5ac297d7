// Tool and library versions, saved next to every output so a run can be reproduced.
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

/** The package root (the folder holding our package.json), from src/ or dist/src/. */
export const packageRoot: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate)) {
      const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string };
      if (pkg.name === 'kd-toolkit') return dir;
    }
    dir = dirname(dir);
  }
  throw new Error('kd-toolkit: cannot find the package root (package.json named "kd-toolkit")');
})();

export const toolVersion: string = (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;

const require = createRequire(join(packageRoot, 'package.json'));

/** Installed version of a dependency, or null when it is not installed. */
export function dependencyVersion(name: string): string | null {
  try {
    const path = require.resolve(`${name}/package.json`);
    return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
  } catch {
    return null;
  }
}

export interface RunVersions {
  tool: string;
  toolVersion: string;
  node: string;
  platform: string;
  arch: string;
  dependencies: Record<string, string | null>;
}

/** Versions recorded in every run's metadata. */
export function runVersions(): RunVersions {
  const deps = ['onnxruntime-node', 'tokenizers', 'onnx-proto', 'hyparquet'];
  return {
    tool: 'kd-toolkit',
    toolVersion,
    node: process.version,
    platform: process.platform,
    arch: process.arch,
    dependencies: Object.fromEntries(deps.map((d) => [d, dependencyVersion(d)])),
  };
}
