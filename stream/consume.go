package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Delivery is one record delivered to an archiver: its bytes as published
// and its stream sequence.
type Delivery struct {
	data []byte
	seq  uint64
	msg  jetstream.Msg
}

// Data returns the record's bytes.
func (d *Delivery) Data() []byte { return d.data }

// Seq returns the record's stream sequence.
func (d *Delivery) Seq() uint64 { return d.seq }

// Consumer is the archivers' durable pull consumer. Several archivers share
// it; each Fetch hands a batch to one of them. Safe for use by one goroutine.
type Consumer struct {
	nc   *nats.Conn
	cons jetstream.Consumer
}

// OpenConsumer binds to (creating or updating it when create is set, with
// ackWait) the archivers' durable consumer on the records stream.
func OpenConsumer(ctx context.Context, nc *nats.Conn, streamName, consumerName string, create bool, ackWait time.Duration) (*Consumer, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if streamName == "" {
		streamName = DefaultStreamName
	}
	if consumerName == "" {
		consumerName = DefaultConsumerName
	}
	var cons jetstream.Consumer
	if create {
		cons, err = EnsureConsumerAckWait(ctx, js, streamName, consumerName, ackWait)
	} else {
		cons, err = js.Consumer(ctx, streamName, consumerName)
	}
	if err != nil {
		return nil, fmt.Errorf("consumer %s on stream %s: %w", consumerName, streamName, err)
	}
	return &Consumer{nc: nc, cons: cons}, nil
}

// Fetch returns up to max records, waiting up to wait for the first ones. An
// empty batch with a nil error means none arrived in time.
func (c *Consumer) Fetch(ctx context.Context, max int, wait time.Duration) ([]*Delivery, error) {
	return c.FetchBytes(ctx, max, 0, wait)
}

// fetchHeadroom is what a pull's byte budget counts beyond a record's data:
// its subject, reply subject and headers.
const fetchHeadroom = 4 << 10

// FetchBytes is Fetch with the records' total size bounded by maxBytes too
// (0: by count only), so a backlog of large records is not pulled into
// memory ten thousand at a time. The budget is never below the server's
// max payload: a record larger than the budget would otherwise be left in
// the stream for good.
func (c *Consumer) FetchBytes(ctx context.Context, maxRecords, maxBytes int, wait time.Duration) ([]*Delivery, error) {
	if wait <= 0 {
		wait = time.Second
	}
	opts := []jetstream.FetchOpt{jetstream.FetchMaxWait(wait)}
	if maxBytes > 0 {
		maxBytes = max(maxBytes, int(c.nc.MaxPayload())+fetchHeadroom)
		opts = append(opts, jetstream.FetchMaxBytes(maxBytes))
	}
	// FetchMaxWait, not a context deadline: nats.go then waits a second past
	// the server's expiry, so a record the server sends at the last moment
	// is still received. With a context the client could stop first, and
	// the record, delivered but never seen, would wait out the ack wait.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	batch, err := c.cons.Fetch(maxRecords, opts...)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("fetch: %w", err)
	}
	var out []*Delivery
	for m := range batch.Messages() {
		md, err := m.Metadata()
		if err != nil {
			return out, fmt.Errorf("fetch: message metadata: %w", err)
		}
		out = append(out, &Delivery{data: m.Data(), seq: md.Sequence.Stream, msg: m})
	}
	if err := batch.Error(); err != nil && len(out) == 0 && ctx.Err() == nil &&
		!errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	return out, nil
}

// Ack acknowledges stored records: the work-queue stream then deletes them.
// Acks go out together and are flushed to the server before Ack returns; a
// lost ack only redelivers the record, which the audit de-duplicates.
func (c *Consumer) Ack(ctx context.Context, ds []*Delivery) error {
	for _, d := range ds {
		if err := d.msg.Ack(); err != nil {
			return fmt.Errorf("ack sequence %d: %w", d.seq, err)
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultAckTimeout)
		defer cancel()
	}
	if err := c.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("ack: flush: %w", err)
	}
	return nil
}

// Lag reports records not yet acknowledged: waiting plus delivered but
// unacknowledged.
func (c *Consumer) Lag(ctx context.Context) (uint64, error) {
	info, err := c.cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("consumer info: %w", err)
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}
