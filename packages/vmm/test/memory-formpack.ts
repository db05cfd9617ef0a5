// The memory-driver test Formpack lives in src (shared with the node's tests through @formation/vmm/memory).
export { memoryFormpack } from '../src/memory-formpack.ts';
