# Test certificates (sourced after tests/lib.sh, POSIX sh).
#
# make_certs writes to $T/certs, with /usr/bin/openssl and no other tool:
#   ca.pem                 the test CA that tls_ca_file points at
#   good.pem good.key      localhost, SAN DNS:localhost and IP:127.0.0.1,
#                          issued by the test CA, valid for ten years
#   expired.pem .key       the same names, expired on 2021-01-01
#   wrong.pem .key         other.example only (CN and SAN), test CA
#   unknown.pem .key       localhost, issued by a CA nobody trusts
# Keys are P-256; the expired certificate gets its dates from
# `openssl ca -startdate/-enddate`, so no faketime is needed. A test that
# sources this file skips (exit 77) when openssl is missing.

OPENSSL=/usr/bin/openssl
if [ ! -x "$OPENSSL" ]; then
  echo "SKIP: $OPENSSL is not installed (Debian package openssl)"
  exit 77
fi

CERTS="$T/certs"

# certs_key FILE: a new P-256 private key.
certs_key () {
  "$OPENSSL" genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out "$1" 2>>"$CERTS/openssl.err"
}

# certs_ca NAME CN: a self-signed CA, with the database `openssl ca` needs.
certs_ca () {
  certs_key "$CERTS/$1.key" &&
  "$OPENSSL" req -new -x509 -key "$CERTS/$1.key" -out "$CERTS/$1.pem" \
    -days 3650 -subj "/CN=$2" -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>>"$CERTS/openssl.err" &&
  mkdir -p "$CERTS/$1.db" &&
  : > "$CERTS/$1.db/index.txt" &&
  echo 1000 > "$CERTS/$1.db/serial" &&
  cat > "$CERTS/$1.cnf" <<EOF
[ca]
default_ca = test_ca
[test_ca]
dir = $CERTS/$1.db
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir
certificate = $CERTS/$1.pem
private_key = $CERTS/$1.key
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[anything]
commonName = supplied
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = \$ENV::CERT_SAN
EOF
}

# certs_server NAME CA CN SAN [openssl ca date options...]
certs_server () {
  cs_name=$1 cs_ca=$2 cs_cn=$3 cs_san=$4
  shift 4
  [ $# -gt 0 ] || set -- -days 3650
  certs_key "$CERTS/$cs_name.key" &&
  "$OPENSSL" req -new -key "$CERTS/$cs_name.key" -subj "/CN=$cs_cn" \
    -out "$CERTS/$cs_name.csr" 2>>"$CERTS/openssl.err" &&
  CERT_SAN=$cs_san "$OPENSSL" ca -batch -notext \
    -config "$CERTS/$cs_ca.cnf" -extensions server_ext \
    -in "$CERTS/$cs_name.csr" -out "$CERTS/$cs_name.pem" \
    "$@" 2>>"$CERTS/openssl.err"
}

make_certs () {
  mkdir -p "$CERTS" || return 1
  if ! { certs_ca ca "rampmail test CA" &&
         certs_ca stranger "unknown test CA" &&
         certs_server good ca localhost "DNS:localhost,IP:127.0.0.1" &&
         certs_server expired ca localhost "DNS:localhost,IP:127.0.0.1" \
           -startdate 20200101000000Z -enddate 20210101000000Z &&
         certs_server wrong ca other.example "DNS:other.example" &&
         certs_server unknown stranger localhost \
           "DNS:localhost,IP:127.0.0.1"; }; then
    echo "cannot make the test certificates:"
    cat "$CERTS/openssl.err"
    exit 99
  fi
}

# cert_fingerprint NAME: the pin for $CERTS/NAME.pem, "sha256:" and hex.
cert_fingerprint () {
  "$OPENSSL" x509 -in "$CERTS/$1.pem" -noout -fingerprint -sha256 |
    sed 's/^.*=//; s/://g' | tr 'A-F' 'a-f' | sed 's/^/sha256:/'
}
