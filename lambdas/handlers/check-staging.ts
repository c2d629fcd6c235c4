import { checkStaging } from '../pipeline/steps/load';
import { lambdaHandler } from './lambda';

export const handler = lambdaHandler(checkStaging);
