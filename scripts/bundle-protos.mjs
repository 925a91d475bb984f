#!/usr/bin/env node
// Build step: the .proto schema as protobufjs JSON next to the compiled images/schema.js, which
// loads it instead of parsing the .proto files (see bundlePath there).
import fs from 'node:fs';
import { bundlePath, schemaJson } from '../dist/images/schema.js';

fs.writeFileSync(bundlePath, schemaJson());
