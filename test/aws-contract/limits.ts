/**
 * Every AWS limit the stand-ins enforce, in one table: the fakes (./fakes) and the contract
 * harness (./harness.ts) read them from here, so a newly documented limit is one entry here
 * plus the one place that checks it. Each names the documentation page that states it.
 */
export const AWS_LIMITS = {
  rdsData: {
    /**
     * "The response size limit is 1 MiB. If the call returns more than 1 MiB of response data,
     * the call is terminated." With formatRecordsAs JSON the limit is 10 MiB.
     * https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/data-api.html#data-api.limitations
     */
    maxResponseBytes: 1024 * 1024,
    maxJsonResponseBytes: 10 * 1024 * 1024,
    /**
     * A call ends after 45 s ("If the call isn't finished processing within 45 seconds, it's
     * terminated"); continueAfterTimeout keeps the statement running.
     * https://docs.aws.amazon.com/rdsdataservice/latest/APIReference/API_ExecuteStatement.html
     */
    callTimeoutMs: 45_000,
  },
  redshiftData: {
    /**
     * BatchExecuteStatement "Sqls": "Array Members: Minimum number of 1 item. Maximum number of
     * 40 items." https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_BatchExecuteStatement.html
     */
    maxBatchStatements: 40,
    /**
     * "The maximum query statement size is 100 KB."
     * https://docs.aws.amazon.com/redshift/latest/mgmt/data-api.html (Considerations)
     */
    maxStatementBytes: 100 * 1024,
    /**
     * SessionKeepAliveSeconds: "The maximum time a session can keep alive is 24 hours. After 24
     * hours, the session is forced closed and the query is terminated."
     * https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_BatchExecuteStatement.html
     */
    maxSessionKeepAliveSeconds: 24 * 60 * 60,
    /**
     * ListStatements MaxResults: "Valid Range: Minimum value of 0. Maximum value of 100."
     * https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_ListStatements.html
     */
    maxListResults: 100,
    /**
     * GetStatementResult returns pages of at most 100 MB (documented); the fake pages by rows
     * so that paging is exercised on small results.
     * https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_GetStatementResult.html
     */
    resultPageRows: 1_000,
  },
  s3: {
    /**
     * ListObjectsV2 "returns some or all (up to 1,000) of the objects in a bucket".
     * https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html
     */
    maxListKeys: 1_000,
    /**
     * DeleteObjects: "The request can contain a list of up to 1,000 keys".
     * https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html
     */
    maxDeleteKeys: 1_000,
  },
  sns: {
    /**
     * Publish Message: "up to 256 KB"; Subject: "under 100 characters", no line breaks.
     * https://docs.aws.amazon.com/sns/latest/api/API_Publish.html
     */
    maxMessageBytes: 256 * 1024,
    maxSubjectCharacters: 100,
  },
  stepFunctions: {
    /**
     * "Maximum input or output size for a task, state, or execution: 256 KiB of data as a
     * UTF-8 encoded string"; exceeding it fails the execution with States.DataLimitExceeded,
     * which "States.ALL" does not catch ("States.ALL ... does not match States.DataLimitExceeded"
     * in https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html).
     * https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html
     */
    maxPayloadBytes: 256 * 1024,
    /**
     * "Maximum execution history size: 25,000 events" (Standard workflows); past it the
     * execution fails. https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html
     */
    maxHistoryEvents: 25_000,
  },
} as const;

/** Bytes of `value` as JSON in UTF-8: how Step Functions and the Data APIs measure payloads. */
export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value ?? null), 'utf8');
}
