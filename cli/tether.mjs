#!/usr/bin/env -S node --no-node-snapshot
// Launcher: registers tsx from this package (not the caller's cwd), then runs the TypeScript CLI.
import { register } from 'tsx/esm/api'

register()
await import('./main.ts')
