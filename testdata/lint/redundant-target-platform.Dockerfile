FROM --platform=$TARGETPLATFORM alpine
FROM --platform=${TARGETPLATFORM} alpine AS b
