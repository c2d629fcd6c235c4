import { importOneFile } from '../pipeline/steps/load';
import { lambdaHandler } from './lambda';

export const handler = lambdaHandler(importOneFile);
