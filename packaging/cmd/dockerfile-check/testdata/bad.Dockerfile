FROM debian
from alpine:3 as b
ENV A $B
CMD echo hi
