// SPDX-License-Identifier: Apache-2.0
// Writes docs/model.md and docs/schemas/*.json from the zod model.
import { mkdirSync, writeFileSync } from 'node:fs';
import { renderModelDocs, renderSchemaFiles } from '../src/config/docs.ts';

const root = new URL('../', import.meta.url).pathname;
mkdirSync(`${root}docs/schemas`, { recursive: true });
writeFileSync(`${root}docs/model.md`, renderModelDocs());
for (const [name, body] of Object.entries(renderSchemaFiles())) writeFileSync(`${root}docs/schemas/${name}`, body);
console.log('wrote docs/model.md and docs/schemas/');
