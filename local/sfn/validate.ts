/**
 * Typed wrapper around `asl-validator` (CommonJS, no type declarations). The validator mutates its
 * input (it fills in QueryLanguage), so it is given its own parse of the text.
 */
import { createRequire } from 'node:module';

interface AslValidatorResult {
  isValid: boolean;
  errorsText: (separator?: string) => string;
}
type AslValidator = (definition: unknown, options?: { checkPaths?: boolean; checkArn?: boolean }) => AslValidatorResult;

const aslValidator = createRequire(import.meta.url)('asl-validator') as AslValidator;

/**
 * asl-validator compiles its JSON schemas with a fresh Ajv on every call (1-2 s each), so results
 * are memoised per definition text for the life of the process.
 */
const verdicts = new Map<string, string[]>();

/** Returns the validator's messages for a definition's JSON text; empty when it is valid. */
export function validateAsl(definitionText: string): string[] {
  const cached = verdicts.get(definitionText);
  if (cached) return cached;
  const result = aslValidator(JSON.parse(definitionText), { checkPaths: true, checkArn: true });
  const problems = result.isValid ? [] : result.errorsText('\n').split('\n').filter((line) => line.length > 0);
  verdicts.set(definitionText, problems);
  return problems;
}
