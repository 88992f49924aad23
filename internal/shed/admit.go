package shed

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// AdmitHandler answers "may this request go on?" for proxies that ask an
// external service per request (Envoy's ext_authz HTTP service, NGINX's
// auth_request): 200 to admit; the shed status with Retry-After to refuse.
// The request judged is described by X-Original-Method and X-Original-URI
// when present (NGINX passes them by configuration), otherwise by the
// check request itself with prefix cut from its path (Envoy's
// path_prefix). Its other headers are matched by the rules as they are.
// A deny=NNN query parameter overrides the refusal status (auth_request
// only passes 401 and 403 through).
func (s *Shedder) AdmitHandler(prefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := s.cfg.Status
		if d := r.URL.Query().Get("deny"); d != "" {
			n, err := strconv.Atoi(d)
			if err != nil || n < 400 || n > 599 {
				http.Error(w, "deny="+strconv.Quote(d)+": must be a 4xx or 5xx status", http.StatusBadRequest)
				return
			}
			status = n
		}
		orig := &http.Request{Method: r.Method, Header: r.Header, Host: r.Host, URL: &url.URL{Path: strings.TrimPrefix(r.URL.Path, prefix)}}
		if m := r.Header.Get("X-Original-Method"); m != "" {
			orig.Method = m
		}
		if u := r.Header.Get("X-Original-URI"); u != "" {
			if pu, err := url.ParseRequestURI(u); err == nil {
				orig.URL = pu
			}
		}
		if orig.URL.Path == "" {
			orig.URL.Path = "/"
		}
		if s.Admit(orig).Admit {
			w.WriteHeader(http.StatusOK)
			return
		}
		s.reject(w, status)
	})
}
