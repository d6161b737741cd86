/**
 * Moleculer's fastest-validator, with Flowmesh's own rule types registered (a batch of
 * flow records: src/validation.ts). New-style custom checks: string limits count
 * Unicode characters.
 */
import { Validators } from "moleculer";
import { addFlowRules } from "../src/validation";

// (moleculer's typings omit the constructor's options and the inner instance.)
const FastestValidator = Validators.Fastest as unknown as new (options: object) => Validators.Fastest & { validator: Parameters<typeof addFlowRules>[0] };

export function createValidator(): Validators.Fastest {
  const validator = new FastestValidator({ useNewCustomCheckerFunction: true });
  addFlowRules(validator.validator);
  return validator;
}
