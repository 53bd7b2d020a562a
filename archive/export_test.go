package archive

import (
	"time"

	"github.com/klauspost/compress/zstd"
)

type benchMsg struct {
	data []byte
	seq  uint64
}

func (m benchMsg) Data() []byte { return m.data }
func (m benchMsg) Seq() uint64  { return m.seq }

// EncodeBatchForBench encodes records as one batch and returns the
// compressed size.
func EncodeBatchForBench(recs [][]byte, level zstd.EncoderLevel) int {
	enc, err := newEncoder(level, 2)
	if err != nil {
		panic(err)
	}
	defer enc.Close()
	msgs := make([]Message, len(recs))
	for i, r := range recs {
		msgs[i] = benchMsg{r, uint64(i + 1)}
	}
	res := encodeBatch(msgs, time.Now(), enc)
	n := 0
	for _, o := range res.objects {
		n += len(o.data)
	}
	return n
}
