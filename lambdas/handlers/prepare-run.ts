import { prepareRun } from '../pipeline/steps/prepare';
import { lambdaHandler } from './lambda';

export const handler = lambdaHandler(prepareRun);
