/** The converter engine: run untrusted ThingsBoard, TTN and Thinger converter scripts in isolated-vm. */
export { defaultFunction, functionsOf } from './dialects/index.ts'
export { ConverterEngine, type EngineOptions, type EngineStats } from './engine.ts'
export { ConverterError } from './errors.ts'
export type * from './types.ts'
