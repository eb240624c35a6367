// Placeholder until the handler lands (same session); keeps CDK synth working meanwhile.
export const handler = async (): Promise<never> => {
  throw new Error('not implemented yet');
};
