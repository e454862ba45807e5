import type { Config } from '../../config';
import { childLogger, type Logger } from '../../logger';
import { fileMailPort, fileSmsPort } from './file-outbox';
import type { NotifyPorts } from './ports';
import { smtpMailPort } from './smtp';
import { twilioSmsPort } from './twilio';

export type {
  ContactMark,
  MailMessage,
  MailPort,
  NotifyPorts,
  SendOutcome,
  SmsLookup,
  SmsMessage,
  SmsPort,
} from './ports';
export { messageIdFor } from './ports';

/**
 * Picks the adapters from the configuration: SMTP when SMTP_URL is set, Twilio when the TWILIO_*
 * settings are, otherwise the outbox folder under DATA_DIR (each channel independently).
 */
export function createNotifyPorts(config: Config, logger: Logger): NotifyPorts {
  const log = childLogger(logger, 'notify');
  const mail =
    config.mail.smtpUrl === null
      ? fileMailPort(config.dataDir, config.mail.from, log)
      : smtpMailPort(
          {
            url: config.mail.smtpUrl,
            from: config.mail.from,
            timeoutMs: config.notify.timeoutMs,
            // One per email job in flight: a send never queues inside the pool behind another.
            maxConnections: config.notify.concurrency,
            dkim: config.notify.dkim,
          },
          log,
        );
  const sms =
    config.sms === null
      ? fileSmsPort(config.dataDir, log)
      : twilioSmsPort({ sms: config.sms, timeoutMs: config.notify.timeoutMs });
  log.info({ mail: mail.provider, sms: sms.provider }, 'notification adapters ready');
  return {
    mail,
    sms,
    close: async () => {
      await Promise.all([mail.close(), sms.close()]);
    },
  };
}
