// Where the tests find the repository and the shared reference material.
import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** The repository root (this file is compiled to dist/test/helpers/paths.js). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** `shared/` beside the checkout (CI lays a copy there); STASIS_SHARED overrides. */
export const sharedDir = process.env.STASIS_SHARED ?? path.resolve(repoRoot, '../shared');

/** The CRIU 4.2 image sets. */
export const fixturesDir = path.join(sharedDir, 'fixtures/criu-4.2');
export const fixtureSets = ['single', 'threads', 'tree', 'runc-busybox'] as const;
