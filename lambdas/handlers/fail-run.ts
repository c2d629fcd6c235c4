import { failRun } from '../pipeline/steps/finish';
import { lambdaHandler } from './lambda';

export const handler = lambdaHandler(failRun);
