FROM scratch
COPY secret.txt /s
ADD logs/today.log /l
COPY --from=alpine /etc/passwd /p
COPY src /src
