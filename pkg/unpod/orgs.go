package unpod

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
)

// maxOrgPages bounds the organizations listing, in case a server repeats
// its first page for every page number.
const maxOrgPages = 100

// Organizations lists the organizations the token can see; each Handle is a
// valid Org-Handle for CallLogs. When the answer carries a count larger than
// what arrived, the following pages are read too; a 404 for one of those
// (ErrPastLastPage: the list shrank, or the count was wrong) ends the list
// there instead of failing it.
func (c *Client) Organizations(ctx context.Context) ([]Organization, error) {
	var all []Organization
	for page := 1; page <= maxOrgPages; page++ {
		var orgs []Organization
		count := -1
		q := url.Values{}
		if page > 1 {
			q.Set("page", strconv.Itoa(page))
		}
		err := c.do(ctx, "organizations", OrganizationsPath, q, "", func(body []byte) error {
			o, n, err := decodeOrganizations(body)
			orgs, count = o, n
			return err
		})
		if page > 1 && errors.Is(err, ErrPastLastPage) {
			c.log.LogAttrs(ctx, slog.LevelInfo, "organizations listing ended before its count said",
				slog.Int("page", page), slog.Int("listed", len(all)), slog.String("err", err.Error()))
			break
		}
		if err != nil {
			return nil, err
		}
		all = append(all, orgs...)
		if len(orgs) == 0 || count < 0 || len(all) >= count {
			break
		}
	}
	return all, nil
}

// DecodeOrganizations decodes an organizations response: the usual envelope
// with a data array, or a bare array.
func DecodeOrganizations(body []byte) ([]Organization, error) {
	orgs, _, err := decodeOrganizations(body)
	return orgs, err
}

// decodeOrganizations also returns the envelope's count, -1 when absent.
func decodeOrganizations(body []byte) ([]Organization, int, error) {
	var items []json.RawMessage
	var env envelope
	count := -1
	if err := json.Unmarshal(body, &env); err == nil && env.Data == nil && env.StatusCode >= 400 {
		return nil, 0, &APIError{Status: env.StatusCode, Message: env.Message}
	} else if err == nil && env.Data != nil {
		items = env.Data
		if env.Count != nil {
			count = *env.Count
		}
	} else if err := json.Unmarshal(body, &items); err != nil {
		return nil, 0, fmt.Errorf("%w: organizations: no data array", ErrMalformed)
	}
	out := make([]Organization, 0, len(items))
	for i, raw := range items {
		var o struct {
			Handle flexString `json:"domain_handle"`
			Name   flexString `json:"name"`
		}
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, 0, fmt.Errorf("%w: organization %d: %v", ErrMalformed, i, err)
		}
		out = append(out, Organization{Handle: o.Handle.S, Name: o.Name.S, Raw: raw})
	}
	return out, count, nil
}
