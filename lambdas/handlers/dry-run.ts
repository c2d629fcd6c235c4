import { dryRun } from '../pipeline/steps/prepare';
import { lambdaHandler } from './lambda';

export const handler = lambdaHandler(dryRun);
