FROM alpine AS base
run echo hi
Copy a /a
FROM base
RUN echo ok
