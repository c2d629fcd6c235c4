import { checkUnload } from '../pipeline/steps/unload';
import { lambdaHandler } from './lambda';

export const handler = lambdaHandler(checkUnload);
