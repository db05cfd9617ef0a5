export * from './attacker.ts';
