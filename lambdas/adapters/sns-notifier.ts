/** Notifier over SNS: the topic the alarms also go to (e-mail by default). */
import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import type { Notifier } from '../pipeline/deps';

export class SnsNotifier implements Notifier {
  constructor(
    private readonly sns: SNSClient,
    private readonly topicArn: string,
  ) {}

  async notify(subject: string, message: string): Promise<void> {
    // SNS subjects: at most 100 characters, no line breaks.
    const oneLine = subject.replace(/\s+/g, ' ').slice(0, 100);
    await this.sns.send(
      new PublishCommand({ TopicArn: this.topicArn, Subject: oneLine, Message: message }),
    );
  }
}
