import { importFiles } from '../pipeline/steps/load';
import { lambdaHandler } from './lambda';

export const handler = lambdaHandler(importFiles);
