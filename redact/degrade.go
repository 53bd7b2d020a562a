package redact

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/mdtap/mdtap"
)

// Degrade returns the metadata-only form of a record for reason (see
// mdtap.Record.Degrade): the protected record stripped of every payload
// value, each body's keyed digest computed from the raw body. prot may be nil
// when protection itself failed; the metadata then comes from raw, and only
// what needs no policy decision is kept (no subject unless it can be hashed,
// no rsp_msg).
func (r *Redactor) Degrade(raw, prot *mdtap.Record, reason string) (*mdtap.Record, error) {
	var out mdtap.Record
	if prot != nil {
		out = *prot
		req, resp := prot.Request, prot.Response
		out.Request = req
		if resp != nil {
			rc := *resp
			out.Response = &rc
		}
	} else {
		out = mdtap.Record{
			V: raw.V, ID: raw.ID, Time: raw.Time, DurationMS: raw.DurationMS, Service: raw.Service,
			OrgCode: raw.OrgCode, Sector: raw.Sector, API: raw.API, TranID: raw.TranID, TranIDEchoed: raw.TranIDEchoed,
			APIType: raw.APIType, Transmission: raw.Transmission, Error: raw.Error, Policy: r.policy.ID,
		}
		keys := r.keys.Primary()
		out.Keys = &keys
		out.Request = mdtap.Request{Method: raw.Request.Method, Host: raw.Request.Host, Payload: raw.Request.Payload}
		if raw.Response != nil {
			out.Response = &mdtap.Response{Status: raw.Response.Status, Payload: raw.Response.Payload}
		}
		if raw.Subject != "" {
			s := &session{r: r, rec: &out, seal: r.keys}
			if h, err := s.hashValue([]byte(raw.Subject), DomainSubject); err == nil {
				out.Subject = h
			}
		}
		if out.Sector == "" {
			out.Sector = mdtap.SectorUnknown
		}
		if out.API == "" {
			out.API = mdtap.APIUnknown
		}
		if out.Transmission == "" {
			out.Transmission = mdtap.TransmissionOf(out.APIType)
		}
	}
	var errs []error
	digest := func(dst *mdtap.Payload, src *mdtap.Payload, part string) {
		dst.FullSHA256 = nil
		if dst.BodyDigest != "" || (src.BodyBytes == 0 && len(src.Body) == 0) {
			return
		}
		sum := src.FullSHA256
		if sum == nil {
			s := sha256.Sum256(src.Body)
			sum = s[:]
		}
		s := &session{r: r, rec: &out, seal: r.keys}
		d, err := s.hashValue(sum, DomainBody)
		if err != nil {
			errs = append(errs, fmt.Errorf("digest %s body: %w", part, err))
			return
		}
		dst.BodyDigest = d
	}
	digest(&out.Request.Payload, &raw.Request.Payload, "request")
	if out.Response != nil && raw.Response != nil {
		digest(&out.Response.Payload, &raw.Response.Payload, "response")
	}
	out.Degrade(reason)
	if prot == nil && out.Response != nil {
		out.Response.RspCode, out.Response.RspMsg, out.Response.OAuthError = "", "", ""
	}
	return &out, errors.Join(errs...)
}
