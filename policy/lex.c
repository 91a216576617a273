/* The policy lexer: the whole text at once into an array of tokens, so the parser can
 * look ahead freely and every lexical error is reported once, where it is. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_int.h"

struct lexer {
	const char *s, *end, *bol; /* bol: the current line's first byte, for columns */
	int line;
	struct policy_diags *d;
	struct pol_token *t;
	size_t n, cap;
	char *strs;
	size_t strn;
	int oom;
};

static int lx_col(const struct lexer *lx, const char *at)
{
	return (int)(at - lx->bol) + 1;
}

static struct pol_token *lx_push(struct lexer *lx, int type, const char *at, size_t n)
{
	if (lx->n == lx->cap) {
		size_t cap = lx->cap ? lx->cap * 2 : 256;
		struct pol_token *t = realloc(lx->t, cap * sizeof(*t));

		if (t == NULL) {
			lx->oom = 1;
			return NULL;
		}
		lx->t = t;
		lx->cap = cap;
	}
	struct pol_token *t = &lx->t[lx->n++];

	memset(t, 0, sizeof(*t));
	t->type = type;
	t->line = lx->line;
	t->col = lx_col(lx, at);
	t->s = at;
	t->n = n;
	return t;
}

static int is_word_start(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_word(int c)
{
	return is_word_start(c) || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

static int is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* A string ends at its closing quote; a newline or the end of input before it is an
 * error, and so is a NUL inside it (reported once, the string becomes T_ERR). */
static const char *lx_string(struct lexer *lx, const char *q)
{
	const char *s = q + 1;
	char *out = lx->strs + lx->strn;
	size_t n = 0;
	int bad = 0;

	while (s < lx->end && *s != '"' && *s != '\n') {
		if (*s == '\0' && !bad) {
			pol_diag(lx->d, POLICY_ERROR, lx->line, lx_col(lx, s), "NUL byte in input");
			bad = 1;
		}
		if (*s == '\\' && s + 1 < lx->end && (s[1] == '"' || s[1] == '\\')) {
			out[n++] = s[1];
			s += 2;
			continue;
		}
		out[n++] = *s++;
	}
	if (s >= lx->end || *s != '"') {
		if (!bad)
			pol_diag(lx->d, POLICY_ERROR, lx->line, lx_col(lx, q),
				 "unterminated string");
		lx_push(lx, T_ERR, q, (size_t)(s - q));
		return s;
	}
	out[n] = '\0';
	struct pol_token *t = lx_push(lx, bad ? T_ERR : T_STR, q, (size_t)(s + 1 - q));

	if (t != NULL && !bad) {
		t->raw = q;
		t->s = out;
		t->n = n;
		lx->strn += n + 1;
	}
	return s + 1;
}

static const char *lx_number(struct lexer *lx, const char *s)
{
	const char *b = s;

	while (s < lx->end && is_digit(*s))
		s++;
	if (s + 1 < lx->end && *s == '.' && is_digit(s[1])) {
		s++;
		while (s < lx->end && is_digit(*s))
			s++;
	}
	while (s < lx->end && is_alpha(*s))
		s++;
	if (s + 1 < lx->end && s[0] == '/' && s[1] == 's')
		s += 2;
	if (s < lx->end && *s == '%')
		s++;
	lx_push(lx, T_NUM, b, (size_t)(s - b));
	return s;
}

static const char *lx_punct(struct lexer *lx, const char *s)
{
	static const struct {
		const char *text;
		int type;
	} ops[] = {
	    {"!=", T_NE}, {"!~", T_NMATCH}, {"<=", T_LE}, {">=", T_GE},	  {"(", T_LP},
	    {")", T_RP},  {"{", T_LB},	    {"}", T_RB},  {",", T_COMMA}, {"~", T_MATCH},
	    {"=", T_EQ},  {"<", T_LT},	    {">", T_GT},  {"-", T_DASH},  {":", T_COLON},
	};

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		size_t n = strlen(ops[i].text);

		if ((size_t)(lx->end - s) >= n && memcmp(s, ops[i].text, n) == 0) {
			lx_push(lx, ops[i].type, s, n);
			return s + n;
		}
	}
	unsigned char c = (unsigned char)*s;

	if (c >= 0x21 && c < 0x7f)
		pol_diag(lx->d, POLICY_ERROR, lx->line, lx_col(lx, s), "unexpected character '%c'",
			 c);
	else
		pol_diag(lx->d, POLICY_ERROR, lx->line, lx_col(lx, s), "unexpected byte 0x%02x", c);
	lx_push(lx, T_ERR, s, 1);
	return s + 1;
}

static void lx_newline(struct lexer *lx, const char *nl)
{
	lx->line++;
	lx->bol = nl + 1;
}

int pol_lex(const char *text, size_t len, struct policy_diags *d, struct pol_token **toks,
	    size_t *ntoks, char **strs)
{
	struct lexer lx = {.s = text, .end = text + len, .bol = text, .line = 1, .d = d};
	const char *s = text;

	/* unescaping only shrinks a string, so the input's length bounds them all */
	lx.strs = malloc(len + 1);
	if (lx.strs == NULL)
		return -1;
	while (s < lx.end && !lx.oom) {
		char c = *s;

		if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
			s++;
		} else if (c == '\\' && s + 1 < lx.end && s[1] == '\n') {
			lx_newline(&lx, s + 1);
			s += 2;
		} else if (c == '\\' && s + 2 < lx.end && s[1] == '\r' && s[2] == '\n') {
			lx_newline(&lx, s + 2);
			s += 3;
		} else if (c == '#') {
			/* a NUL is an error even in a comment: the file is not text */
			while (s < lx.end && *s != '\n') {
				if (*s == '\0') {
					pol_diag(d, POLICY_ERROR, lx.line, lx_col(&lx, s),
						 "NUL byte in input");
					lx_push(&lx, T_ERR, s, 1);
				}
				s++;
			}
		} else if (c == '\n') {
			lx_push(&lx, T_NL, s, 1);
			lx_newline(&lx, s);
			s++;
		} else if (c == '\0') {
			pol_diag(d, POLICY_ERROR, lx.line, lx_col(&lx, s), "NUL byte in input");
			lx_push(&lx, T_ERR, s, 1);
			s++;
		} else if (c == '"') {
			s = lx_string(&lx, s);
		} else if (is_digit(c)) {
			s = lx_number(&lx, s);
		} else if (is_word_start(c)) {
			const char *b = s;

			while (s < lx.end && is_word(*s))
				s++;
			lx_push(&lx, T_WORD, b, (size_t)(s - b));
		} else {
			s = lx_punct(&lx, s);
		}
	}
	lx_push(&lx, T_EOF, s, 0);
	if (lx.oom) {
		free(lx.t);
		free(lx.strs);
		return -1;
	}
	*toks = lx.t;
	*ntoks = lx.n;
	*strs = lx.strs;
	return 0;
}

int pol_str_col(const struct pol_token *t, size_t k)
{
	const char *r = t->raw + 1;
	int col = t->col + 1;

	for (size_t i = 0; i < k; i++) {
		if (r[0] == '\\' && (r[1] == '"' || r[1] == '\\')) {
			r += 2;
			col += 2;
		} else {
			r++;
			col++;
		}
	}
	return col;
}
